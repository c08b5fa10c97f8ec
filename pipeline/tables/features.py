"""A backbone's cached features: the files of its folder, and view 0 of every split joined to the index.

The features stage writes {train,val,test}.npz (features, labels, paths, subjects, view per row),
meta.json and the base's weights, which fine-tuning starts from.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from pipeline.core.errors import PipelineError, check_inputs, require_file
from pipeline.core.params import SPLITS
from pipeline.tables.index import read_index

BASE_WEIGHTS = "base.weights.h5"
META_NAME = "meta.json"


@dataclass(frozen=True)
class Pool:
    features: np.ndarray  # (n, dim) float32
    rows: pd.DataFrame  # path, label (class index), kind, source, subject, split; one row per feature row


def load_features(features_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of one split's features file, or a PipelineError saying which stage makes it."""
    path = split_file(features_dir, split)
    require_file(path, f"features@{features_dir.name}")
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def read_features_meta(features_dir: Path, expected: Mapping = MappingProxyType({})) -> dict:
    """The meta.json the features stage wrote beside the arrays; a PipelineError when it records other values
    than `expected` (weights, image_size, classes: what params or the TFRecords say now)."""
    path = features_dir / META_NAME
    require_file(path, f"features@{features_dir.name}")
    meta = json.loads(path.read_text())
    check_inputs(path, meta, expected, f"features@{features_dir.name}")
    return meta


def base_weights_file(features_dir: Path) -> Path:
    """The base the features came from; fine-tuning starts from it."""
    return features_dir / BASE_WEIGHTS


def split_file(features_dir: Path, split: str) -> Path:
    return features_dir / f"{split}.npz"


def load_pool(features_dir: Path, index_path: Path) -> Pool:
    """Every cached image as stored (view 0) of train, val and test, with its kind, source and subject."""
    splits = {}
    for split in SPLITS:
        path = split_file(features_dir, split)
        require_file(path, f"features@{features_dir.name}")
        with np.load(path) as arrays:
            plain = arrays["view"] == 0
            splits[split] = {name: arrays[name][plain] for name in ("features", "labels", "paths")}
    return join_index(splits, index_path, f"{features_dir}", f"dvc repro features@{features_dir.name}")


def join_index(splits: dict[str, dict[str, np.ndarray]], index_path: Path, origin: str, remedy: str) -> Pool:
    """A Pool of each split's `features`, `labels` and `paths` (train, val, test in turn), joined to the index for
    kind, source and subject; a path the index lacks stops with `origin` named and `remedy` to run."""
    features = [splits[split]["features"] for split in SPLITS]
    rows = pd.concat([pd.DataFrame({"path": splits[split]["paths"], "label": splits[split]["labels"], "split": split})
                      for split in SPLITS], ignore_index=True)
    index = read_index(index_path).set_index("path")
    unknown = rows.loc[~rows["path"].isin(index.index), "path"]
    if len(unknown):
        raise PipelineError(f"{origin}: {unknown.iloc[0]} is not in {index_path}; rerun {remedy}")
    rows = rows.join(index[["kind", "source", "subject"]], on="path")
    return Pool(features=np.concatenate(features), rows=rows)
