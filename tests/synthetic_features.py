"""Small synthetic cached features that encode each subject's identity, as a Pool and as a project on disk."""

import json

import numpy as np
import pandas as pd
import yaml
from PIL import Image
from scipy import ndimage

from pipeline.core.params import SPLITS
from pipeline.tables.features import Pool
from pipeline.tables.index import INDEX_COLUMNS
from pipeline.tables.source import SourceInfo, write_source_info
from tests.conftest import raw_params

N_CLASSES = 4
BACKBONE = "MobileNetV3Small"
ARCHIVE = "data/raw/demo"


def synthetic_pool(leak: bool) -> Pool:
    """Per class 1 test, 1 val and 4 train subjects of 8 slices: class offset + subject mean + noise; train
    subjects also have one copy of each slice. With `leak`, copies of test subject 0's slices are in train."""
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 3, (N_CLASSES, 32))
    rows, features = [], []
    for label in range(N_CLASSES):
        for number, split in enumerate(["test", "val"] + ["train"] * 4):
            subject = f"c{label}/s{number}"
            mean = offsets[label] + rng.normal(0, 3, 32)
            for slice_ in range(8):
                original = mean + rng.normal(0, 1, 32)
                source = f"orig/{subject}-{slice_}.jpg"
                rows.append((source, label, "original", source, subject, split))
                features.append(original)
                if split == "train" or (leak and subject == "c0/s0"):
                    rows.append((f"copy/{subject}-{slice_}.jpg", label, "copy", source, subject, "train"))
                    features.append(original + rng.normal(0, 0.3, 32))
    frame = pd.DataFrame(rows, columns=["path", "label", "kind", "source", "subject", "split"])
    return Pool(features=np.array(features, np.float32), rows=frame)


def write_project(root, pool: Pool, **params) -> None:
    """The pool as the features stage and dedupe would leave it, plus a view-1 copy of train to be ignored."""
    directory = root / "data/features" / BACKBONE
    directory.mkdir(parents=True)
    for split in SPLITS:
        rows = pool.rows[pool.rows["split"] == split]
        views = 2 if split == "train" else 1
        np.savez(directory / f"{split}.npz", features=np.tile(pool.features[rows.index], (views, 1)),
                 labels=np.tile(rows["label"], views), paths=np.tile(rows["path"].to_numpy(str), views),
                 subjects=np.tile(rows["subject"].to_numpy(str), views), view=np.repeat(np.arange(views), len(rows)))
    (directory / "meta.json").write_text(json.dumps({"classes": [f"class{k}" for k in range(N_CLASSES)]}))
    index = pool.rows.assign(label=pool.rows["label"].map(lambda k: f"class{k}"), score="", status="ok", reason="",
                                 source_split="")
    (root / "data/interim").mkdir(parents=True)
    index[list(INDEX_COLUMNS)].to_csv(root / "data/interim/index.csv", index=False)
    write_slices(root / ARCHIVE, pool.rows.loc[pool.rows["kind"] == "original", "path"])
    write_source_info(root / "data/interim/source.json", SourceInfo(
        source="archive", root=ARCHIVE, classes=tuple(f"class{k}" for k in range(N_CLASSES)), channels=1,
        own_splits=False))
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params(**params)))


def write_slices(archive, paths) -> None:
    """A 48 px slice per original path `orig/<subject>-<slice>.jpg`: a disc whose texture is its true subject's,
    drifting a little from slice to slice, so neighbouring slices of a subject are far more alike than two subjects'."""
    rows, cols = np.mgrid[:48, :48]
    disc = (rows - 23.5) ** 2 + (cols - 23.5) ** 2 < 20**2
    for path in paths:
        subject, slice_ = path.removeprefix("orig/").removesuffix(".jpg").rsplit("-", 1)
        rng = np.random.default_rng(list(subject.encode()))
        base, drift = (ndimage.gaussian_filter(rng.normal(size=(48, 48)), 3) for _ in range(2))
        texture = base + 0.1 * int(slice_) * drift
        pixels = np.where(disc, 128 + 100 * texture / np.abs(texture).max(), 0)
        (archive / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(archive / path, quality=95)


def synthetic_images(pool: Pool, size: int) -> np.ndarray:
    """Gray size x size uint8 images of the pool's 32 features: a 4 x 8 grid of flat blocks, so the classes stay
    apart in the pixels and shrinking `size` (a multiple of 8) to a quarter keeps every block."""
    grid = np.clip(128 + 8 * pool.features, 0, 255).astype(np.uint8).reshape(-1, 4, 8)
    return np.kron(grid, np.ones((1, size // 4, size // 8), np.uint8))


def pixel_pool(pool: Pool, size: int = 8) -> Pool:
    """The pool's images (`synthetic_images`) as the baselines read pixels: flattened, in [0, 1]."""
    return Pool(features=synthetic_images(pool, size).reshape(len(pool.rows), -1) / 255.0, rows=pool.rows)


def write_tfrecords(root, pool: Pool, size: int = 32) -> None:
    """The pool's images (`synthetic_images`) as the preprocess stage would leave them in data/tfrecords."""
    from pipeline.imaging.tfrecords import TFRecordsMeta, encode_image, serialize_example, write_meta, write_shards

    directory = root / "data/tfrecords"
    directory.mkdir(parents=True)
    images, shards, counts = synthetic_images(pool, size), {}, {}
    for split in SPLITS:
        rows = pool.rows[pool.rows["split"] == split]
        examples = (serialize_example(encode_image(images[number], "raw"), row.label,
                                      {"path": row.path, "subject": row.subject, "source": row.source,
                                       "kind": row.kind})
                    for number, row in zip(rows.index, rows.itertuples()))
        counts[split] = len(rows)
        shards[split] = write_shards(directory, split, examples, len(rows), 64)
    classes = tuple(f"class{k}" for k in range(N_CLASSES))
    class_counts = {split: {name: int(((pool.rows["split"] == split) & (pool.rows["label"] == index)).sum())
                            for index, name in enumerate(classes)} for split in SPLITS}
    write_meta(directory, TFRecordsMeta(classes, counts, class_counts, size, 1, "raw", 64, shards))
