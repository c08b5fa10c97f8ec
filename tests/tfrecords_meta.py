"""A TFRecords meta.json with no images, for tests that need only what it says the models were trained on."""

from pathlib import Path

from pipeline.core.params import SPLITS
from pipeline.imaging.tfrecords import TFRecordsMeta, write_meta


def write_empty_meta(directory: Path, classes: list[str] | tuple[str, ...], channels: int = 1,
                     image_size: int = 64) -> None:
    """meta.json in `directory` (made if missing) for `classes`, `channels` and `image_size`, every split empty."""
    directory.mkdir(parents=True, exist_ok=True)
    write_meta(directory, TFRecordsMeta(tuple(classes), dict.fromkeys(SPLITS, 0),
                                        {split: dict.fromkeys(classes, 0) for split in SPLITS}, image_size, channels,
                                        "png", 8, {split: [] for split in SPLITS}))
