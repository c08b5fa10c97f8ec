"""Stage `preprocess`: every image of splits.csv, resized to a square, into TFRecord shards per split."""

import logging
from pathlib import Path

from pipeline.core import paths
from pipeline.core.params import SPLITS, Params
from pipeline.imaging.tfrecords import write_tfrecords
from pipeline.tables.source import read_source_info
from pipeline.tables.split import read_splits

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    info = read_source_info(paths.SOURCE_INFO)
    rows = read_splits(paths.SPLITS, info.classes)
    meta = write_tfrecords(rows, Path(info.root), paths.TFRECORDS, info.classes, info.channels, params.image_size,
                           params.preprocess.encoding, params.preprocess.shard_size)
    sizes = ", ".join(f"{split} {meta.counts[split]}" for split in SPLITS)
    n_shards = sum(len(names) for names in meta.shards.values())
    log.info("wrote %d images (%s), %dx%d, %d channel(s), %s, as %d shards and meta.json to %s", len(rows), sizes,
             params.image_size, params.image_size, info.channels, params.preprocess.encoding, n_shards, paths.TFRECORDS)
