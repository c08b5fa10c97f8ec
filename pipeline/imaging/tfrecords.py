"""TFRecord shards of preprocessed scans: Example encoding, shard writing, and the tf.data reader."""

import io
import itertools
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from pipeline.core.errors import PipelineError, check_inputs, require_file
from pipeline.core.files import write_json
from pipeline.core.params import SPLITS
from pipeline.core.text import escape
from pipeline.imaging.reader import load_image

META_NAME = "meta.json"
ID_FIELDS = ("path", "subject", "source", "kind")  # strings stored beside each image
SAVE_OPTIONS = {"png": {"format": "PNG"}, "jpeg": {"format": "JPEG", "quality": 95}}
DECODERS = {"png": tf.io.decode_png, "jpeg": tf.io.decode_jpeg}
SHUFFLE_BUFFER = 10_000  # records held for shuffling; still encoded there, so they stay small
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    **{name: tf.io.FixedLenFeature([], tf.string) for name in ID_FIELDS},
}


def encode_image(pixels: np.ndarray, encoding: str) -> bytes:
    """A uint8 grayscale HxW or RGB HxWx3 array as PNG, JPEG (quality 95) or raw row-major bytes."""
    if encoding == "raw":
        return np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, **SAVE_OPTIONS[encoding])
    return buffer.getvalue()


def serialize_example(image: bytes, label: int, ids: Mapping[str, str]) -> bytes:
    """One tf.train.Example: encoded image, class index, and the ID_FIELDS strings as CSV text (`pipeline.core.text`)."""
    feature = {
        "image": _bytes_feature(image),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        **{name: _bytes_feature(escape(ids[name]).encode()) for name in ID_FIELDS},
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def shard_names(split: str, count: int, shard_size: int) -> list[str]:
    """File names of a split's shards: `<split>-<i>-of-<n>.tfrecord`, none for an empty split."""
    n = -(-count // shard_size)
    return [f"{split}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]


def write_shards(out_dir: Path, split: str, examples: Iterable[bytes], count: int, shard_size: int) -> list[str]:
    """Write `count` serialized Examples in order, `shard_size` per shard; return the shard names."""
    names = shard_names(split, count, shard_size)
    records = iter(examples)
    for name in names:
        with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
            for record in itertools.islice(records, shard_size):
                writer.write(record)
    return names


@dataclass(frozen=True)
class TFRecordsMeta:
    """meta.json beside the shards: what the preprocess stage stored, and how."""

    classes: tuple[str, ...]  # the source's label names; a label's index is its position
    counts: dict[str, int]  # images per split
    class_counts: dict[str, dict[str, int]]  # images per split and class
    image_size: int  # square side, in pixels
    channels: int  # 1 (gray) or 3 (RGB), as stored
    encoding: str  # png, jpeg or raw
    shard_size: int  # records per shard
    shards: dict[str, list[str]]  # each split's shard file names, in read order


def write_meta(out_dir: Path, meta: TFRecordsMeta) -> None:
    """Write meta.json (indent 2, sorted keys) beside the shards."""
    write_json(out_dir / META_NAME, {**asdict(meta), "classes": list(meta.classes)})


def read_meta(tfrecord_dir: Path, expected: Mapping = MappingProxyType({})) -> TFRecordsMeta:
    """The meta.json the preprocess stage wrote, or a PipelineError saying how to make it: missing, or recording
    other values than `expected` (image_size, classes: what params say now)."""
    path = tfrecord_dir / META_NAME
    require_file(path, "preprocess")
    values = json.loads(path.read_text())
    check_inputs(path, values, expected, "preprocess")
    try:
        return TFRecordsMeta(**{**values, "classes": tuple(values["classes"])})
    except (TypeError, KeyError) as error:
        raise PipelineError(f"{path} is not what this version writes ({error}); run `dvc repro preprocess`") from None


def decode_image(encoded: tf.Tensor, encoding: str, image_size: int, channels: int) -> tf.Tensor:
    """Stored bytes back to a uint8 tensor of shape (image_size, image_size, channels)."""
    shape = (image_size, image_size, channels)
    if encoding == "raw":
        image = tf.reshape(tf.io.decode_raw(encoded, tf.uint8), shape)
    else:
        image = DECODERS[encoding](encoded, channels=channels)
    return tf.ensure_shape(image, shape)


def make_dataset(tfrecord_dir: Path, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 channels: int | None = 3, with_ids: bool = False, repeat: bool = False) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], int32 labels), plus a dict of ID_FIELDS strings if with_ids.

    `channels`: 3 (gray scans repeated to 3), 1 (gray scans only), or None (as stored).
    Unshuffled, images come in splits.csv order; shuffled, shard order and records are
    reshuffled each pass, reproducibly for a given seed.
    """
    meta = read_meta(tfrecord_dir)
    stored = meta.channels
    channels = stored if channels is None else channels
    if channels not in (1, 3) or channels < stored:
        raise ValueError(f"channels must be 1 or 3 and at least the {stored} stored, got {channels}")
    files = _shard_paths(tfrecord_dir, meta, split)
    encoding, size = meta.encoding, meta.image_size

    def parse(record):
        example = tf.io.parse_single_example(record, FEATURES)
        image = decode_image(example["image"], encoding, size, stored)
        label = tf.cast(example["label"], tf.int32)
        return (image, label, {name: example[name] for name in ID_FIELDS}) if with_ids else (image, label)

    def to_float(image, *rest):
        image = tf.cast(image, tf.float32)
        return (tf.tile(image, (1, 1, 1, 3)) if channels > stored else image, *rest)

    dataset = tf.data.Dataset.from_tensor_slices([str(path) for path in files])
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed)
    # All shards open and read in parallel; shuffled, one record from each in turn, else whole shards in order.
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=len(files),
        block_length=1 if shuffle else meta.shard_size,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        dataset = dataset.shuffle(min(meta.counts[split], SHUFFLE_BUFFER), seed=seed)
    if repeat:
        dataset = dataset.repeat()
    else:  # a known length: Keras then ends a pass on the count, not by running out of data (and warning)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(meta.counts[split]))
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def read_pixels(tfrecord_dir: Path, split: str, size: int, batch_size: int = 256) -> dict[str, np.ndarray]:
    """A split's stored images shrunk to size x size (each pixel the mean of those it covers, channels as stored) and
    flattened to [0, 1]:
    `features` (n, size * size * channels) float32, `labels`, and `paths` as the features stage stores them."""
    meta = read_meta(tfrecord_dir)
    if size > meta.image_size:
        raise PipelineError(f"{tfrecord_dir}: images of {meta.image_size} px cannot be shrunk to {size} px; "
                            "rerun the preprocess stage (dvc repro preprocess)")
    parts = {"features": [np.zeros((0, size * size * meta.channels), np.float32)],
             "labels": [np.zeros(0, np.int32)], "paths": [np.zeros(0, str)]}
    batches = (make_dataset(tfrecord_dir, split, batch_size, channels=None, with_ids=True)
               if meta.counts[split] else [])
    for images, labels, ids in batches:
        small = tf.image.resize(images, (size, size), method="area") / 255.0
        parts["features"].append(tf.reshape(small, (len(labels), -1)).numpy())
        parts["labels"].append(labels.numpy())
        parts["paths"].append(np.array([value.decode() for value in ids["path"].numpy()]))
    return {name: np.concatenate(values) for name, values in parts.items()}


def _shard_paths(tfrecord_dir: Path, meta: TFRecordsMeta, split: str) -> list[Path]:
    if split not in meta.shards:
        raise PipelineError(f"{tfrecord_dir / META_NAME}: no split {split!r}; it has {', '.join(meta.shards)}")
    paths = [tfrecord_dir / name for name in meta.shards[split]]
    if not paths:
        raise PipelineError(f"{tfrecord_dir}: split {split!r} has no images")
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise PipelineError(f"{tfrecord_dir}: {len(missing)} shard(s) of {split!r} missing, e.g. {missing[0]}; "
                            "rerun the preprocess stage (dvc repro preprocess)")
    return paths


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def write_tfrecords(rows: list, root: Path, out_dir: Path, classes: tuple[str, ...], channels: int,
                    image_size: int, encoding: str, shard_size: int) -> TFRecordsMeta:
    """Replace `out_dir` with each split's shards, written in row order, and meta.json; return the meta.

    `rows` are splits.csv's rows (`pipeline.tables.split.SplitRow`): path (under `root`), label, split and the
    ID_FIELDS. Images are stored with `channels` (1 gray, 3 RGB), as the source has them.
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    label_index = {name: index for index, name in enumerate(classes)}
    shards = {}
    for split in SPLITS:
        split_rows = [row for row in rows if row.split == split]
        examples = (
            serialize_example(encode_image(load_image(root / row.path, image_size, channels), encoding),
                              label_index[row.label], asdict(row))
            for row in tqdm(split_rows, desc=f"preprocess {split}", unit="image")
        )
        shards[split] = write_shards(out_dir, split, examples, len(split_rows), shard_size)
    meta = TFRecordsMeta(
        classes=tuple(classes),
        counts={split: sum(row.split == split for row in rows) for split in SPLITS},
        class_counts={split: {name: sum(row.split == split and row.label == name for row in rows) for name in classes}
                      for split in SPLITS},
        image_size=image_size,
        channels=channels,
        encoding=encoding,
        shard_size=shard_size,
        shards=shards,
    )
    write_meta(out_dir, meta)
    return meta
