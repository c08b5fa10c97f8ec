"""Stage `preprocess`: every image of splits.csv, resized to a square, into TFRecord shards per split; with
split.folds = k > 1, one such folder per fold (fold 0 at data/tfrecords, fold i under data/tfrecords/fold-<i>)."""

import logging
from pathlib import Path

from pipeline.core import paths
from pipeline.core.params import SPLITS, Params
from pipeline.imaging.tfrecords import write_tfrecords
from pipeline.tables.source import read_source_info
from pipeline.tables.split import read_folds

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    info = read_source_info(paths.SOURCE_INFO)
    folds = read_folds(paths.SPLITS, info.classes)
    for fold, rows in enumerate(folds):  # fold 0 first: its folder holds the others
        out_dir = paths.tfrecords_dir(fold)
        meta = write_tfrecords(rows, Path(info.root), out_dir, info.classes, info.channels, params.image_size,
                               params.preprocess.encoding, params.preprocess.shard_size)
        sizes = ", ".join(f"{split} {meta.counts[split]}" for split in SPLITS)
        n_shards = sum(len(names) for names in meta.shards.values())
        log.info("wrote %d images (%s), %dx%d, %d channel(s), %s, as %d shards and meta.json to %s", len(rows), sizes,
                 params.image_size, params.image_size, info.channels, params.preprocess.encoding, n_shards, out_dir)
