"""Stage `preprocess`: every scan of splits.csv, resized to a square, into TFRecord shards per split."""

import logging
from pathlib import Path

from pipeline.core import paths
from pipeline.core.params import SPLITS, Params
from pipeline.imaging.tfrecords import write_tfrecords
from pipeline.tables.split import read_splits

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    rows = read_splits(paths.SPLITS, params.data.classes)
    meta = write_tfrecords(rows, Path(params.data.archive), paths.TFRECORDS, params.data.classes, params.image_size,
                           params.preprocess.encoding, params.preprocess.shard_size)
    sizes = ", ".join(f"{split} {meta['counts'][split]}" for split in SPLITS)
    n_shards = sum(len(names) for names in meta["shards"].values())
    log.info("wrote %d images (%s), %dx%d %s, as %d shards and meta.json to %s", len(rows), sizes,
             params.image_size, params.image_size, params.preprocess.encoding, n_shards, paths.TFRECORDS)
