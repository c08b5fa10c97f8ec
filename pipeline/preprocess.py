"""Stage `preprocess`: every scan of splits.csv, resized to a square, into TFRecord shards per split."""

import csv
import logging
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.images import InvalidImage, read_image
from pipeline.params import SPLITS, load_params
from pipeline.split import SPLITS_PATH
from pipeline.tfrecords import encode_image, serialize_example, write_meta, write_shards

OUT_DIR = Path("data/tfrecords")
CHANNELS = 1  # the scans are grayscale; the reader tiles them to 3 channels for ImageNet backbones
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    path: str  # relative to the archive root, '/'-separated
    label: str
    split: str
    subject: str
    source: str
    kind: str


def main(params_path: Path) -> None:
    params = load_params(params_path)
    rows = read_splits(SPLITS_PATH, params.data.classes)
    meta = write_tfrecords(rows, Path(params.data.archive), OUT_DIR, params.data.classes, params.image_size,
                           params.preprocess.encoding, params.preprocess.shard_size)
    sizes = ", ".join(f"{split} {meta['counts'][split]}" for split in SPLITS)
    n_shards = sum(len(names) for names in meta["shards"].values())
    log.info("wrote %d images (%s), %dx%d %s, as %d shards and meta.json to %s", len(rows), sizes,
             params.image_size, params.image_size, params.preprocess.encoding, n_shards, OUT_DIR)


def read_splits(path: Path, classes: tuple[str, ...]) -> list[Row]:
    """The rows of splits.csv, in file order, with known labels and splits."""
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the split stage first (dvc repro split)")
    columns = [field.name for field in fields(Row)]
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in columns if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = [Row(**{column: record[column] for column in columns}) for record in reader]
    for line, row in enumerate(rows, start=2):
        if row.label not in classes:
            raise PipelineError(f"{path}, line {line}: label {row.label!r} is not one of data.classes")
        if row.split not in SPLITS:
            raise PipelineError(f"{path}, line {line}: split {row.split!r} is not one of {', '.join(SPLITS)}")
    return rows


def load_image(path: Path, size: int) -> np.ndarray:
    """Read one scan with the project's reader and stretch it to a size x size uint8 array.

    Stretched, not padded, as Keras' image_dataset_from_directory does: Kaggle's augmented
    copies are already stretched to squares, and padding would spend pixels on background.
    Pillow's bilinear filter widens with the scale factor, so shrinking is antialiased.
    """
    try:
        pixels = read_image(path)
    except InvalidImage as error:
        raise PipelineError(f"{path}: {error}") from None
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))


def write_tfrecords(rows: list[Row], archive: Path, out_dir: Path, classes: tuple[str, ...], image_size: int,
                    encoding: str, shard_size: int) -> dict:
    """Replace `out_dir` with each split's shards, written in row order, and meta.json; return the meta."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    label_index = {name: index for index, name in enumerate(classes)}
    shards = {}
    for split in SPLITS:
        split_rows = [row for row in rows if row.split == split]
        examples = (
            serialize_example(encode_image(load_image(archive / row.path, image_size), encoding),
                              label_index[row.label], asdict(row))
            for row in tqdm(split_rows, desc=f"preprocess {split}", unit="image")
        )
        shards[split] = write_shards(out_dir, split, examples, len(split_rows), shard_size)
    meta = {
        "classes": list(classes),
        "counts": {split: sum(row.split == split for row in rows) for split in SPLITS},
        "class_counts": {
            split: {name: sum(row.split == split and row.label == name for row in rows) for name in classes}
            for split in SPLITS
        },
        "image_size": image_size,
        "channels": CHANNELS,
        "encoding": encoding,
        "shard_size": shard_size,
        "shards": shards,
    }
    write_meta(out_dir, meta)
    return meta
