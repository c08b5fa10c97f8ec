"""A prepared TFDS image-classification dataset, its examples written out as files the other stages read."""

import importlib
import shutil
from pathlib import Path

from tqdm import tqdm

from pipeline.core.errors import PipelineError
from pipeline.sources.pixels import group_identical, read_pixels, set_aside_unreadable
from pipeline.tables.index import IndexRow, account
from pipeline.tables.source import SourceInfo

OWN_SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}  # TFDS name -> ours
SUFFIXES = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg"}  # how TFDS stores image bytes -> a file suffix


def tfds_name(source: str) -> str:
    """`tfds:<name>` -> `<name>` (a TFDS name, optionally with config and version)."""
    return source.removeprefix("tfds:")


def open_builder(name: str, data_dir: str):
    """The TFDS builder of a prepared dataset, or a PipelineError saying what is missing and how to prepare it."""
    tfds = importlib.import_module("tensorflow_datasets")
    where = data_dir or "TFDS' default data dir (~/tensorflow_datasets, or $TFDS_DATA_DIR)"
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except (ValueError, AssertionError) as error:  # an unknown name or config (ValueError), version (AssertionError)
        raise PipelineError(f"data.source tfds:{name}: TFDS knows no such dataset ({type(error).__name__}: "
                            f"{str(error).splitlines()[0]})") from None
    if not builder.info.splits:
        raise PipelineError(
            f"data.source tfds:{name}: not prepared in {where} (looked in {builder.data_dir}); the pipeline never "
            f"downloads a dataset. On a machine with network run `tfds build {name} --data_dir DIR`, copy DIR here and set "
            f"data.tfds_dir to it (or leave it empty and copy to ~/tensorflow_datasets)")
    return builder


def image_and_label(builder) -> tuple[str, str]:
    """The names of the dataset's image and class-label features (its supervised keys, else the only ones)."""
    tfds = importlib.import_module("tensorflow_datasets")
    features = builder.info.features
    if builder.info.supervised_keys and len(builder.info.supervised_keys) == 2:
        image, label = builder.info.supervised_keys
        if isinstance(features[image], tfds.features.Image) and isinstance(features[label], tfds.features.ClassLabel):
            return image, label
    images = [key for key, feature in features.items() if isinstance(feature, tfds.features.Image)]
    labels = [key for key, feature in features.items() if isinstance(feature, tfds.features.ClassLabel)]
    if len(images) != 1 or len(labels) != 1:
        raise PipelineError(f"data.source tfds:{builder.name}: not an image-classification dataset (image features "
                            f"{images}, class-label features {labels}; one of each is needed)")
    return images[0], labels[0]


def index_tfds(source: str, data_dir: str, classes: tuple[str, ...], out_dir: Path) -> tuple[list[IndexRow], dict,
                                                                                              SourceInfo]:
    """Write every example of every split of the dataset under `out_dir` (its stored bytes, unchanged) and index them.

    Paths are `<tfds split>/<example number>.<png|jpg>`. Where the dataset ships train, validation and test,
    each row's `split` says which; identical pixels join one group, whatever their splits.
    """
    tfds = importlib.import_module("tensorflow_datasets")
    builder = open_builder(tfds_name(source), data_dir)
    image_key, label_key = image_and_label(builder)
    names = tuple(builder.info.features[label_key].names)
    if classes and sorted(classes) != sorted(names):
        raise PipelineError(f"data.classes {list(classes)[:5]}... differ from the {len(names)} classes of "
                            f"tfds:{builder.name}; leave data.classes empty ([]) to take the dataset's own")
    own = {split: OWN_SPLITS[split] for split in builder.info.splits if split in OWN_SPLITS}
    own_splits = sorted(set(own.values())) == ["test", "train", "val"]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    rows = []
    for split in sorted(builder.info.splits):
        (out_dir / split).mkdir(parents=True)
        dataset = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()})
        total = builder.info.splits[split].num_examples
        for number, example in enumerate(tqdm(tfds.as_numpy(dataset), total=total, desc=f"export {split}",
                                              unit="example")):
            encoded = example[image_key]
            path = f"{split}/{number:06d}{_suffix(encoded)}"
            (out_dir / path).write_bytes(encoded)
            rows.append(IndexRow(path=path, label=names[int(example[label_key])], kind="original", source=path,
                                 subject=path, source_split=own.get(split, "") if own_splits else ""))
    pixels = dict(zip([row.path for row in rows], read_pixels(out_dir, [row.path for row in rows])))
    rows = set_aside_unreadable(rows, pixels)
    rows, identical = group_identical(rows, pixels)
    channels = builder.info.features[image_key].shape[-1]
    if channels not in (1, 3):  # not declared: as the pixels are
        channels = 3 if any(pixels[row.path].colour for row in rows if row.status == "ok") else 1
    declared = {split: builder.info.splits[split].num_examples for split in builder.info.splits}
    report = {**account(rows, sum(declared.values()), f"examples in the splits of tfds:{builder.name}"),
              "tfds": {"name": builder.name, "version": str(builder.version), "data_dir": str(builder.data_dir),
                       "splits": declared, "own_splits_used": own_splits},
              "identical": identical}
    info = SourceInfo(source=source, root=out_dir.as_posix(), classes=classes or names, channels=channels,
                      own_splits=own_splits)
    return rows, report, info


def _suffix(encoded: bytes) -> str:
    return next((suffix for magic, suffix in SUFFIXES.items() if encoded.startswith(magic)), ".img")
