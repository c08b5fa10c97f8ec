"""The cached features of one backbone, view 0 of every split, joined to the index's kind and subject."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.params import SPLITS
from pipeline.split import read_index

FEATURES_DIR = Path("data/features")


@dataclass(frozen=True)
class Pool:
    features: np.ndarray  # (n, dim) float32
    rows: pd.DataFrame  # path, label (class index), kind, source, subject, split; one row per feature row


def load_pool(features_dir: Path, index_path: Path) -> Pool:
    """Every cached image as stored (view 0) of train, val and test, with its kind, source and subject."""
    features, frames = [], []
    for split in SPLITS:
        path = features_dir / f"{split}.npz"
        if not path.is_file():
            raise PipelineError(f"{path} not found; run dvc repro features@{features_dir.name} first")
        with np.load(path) as arrays:
            plain = arrays["view"] == 0
            features.append(arrays["features"][plain])
            frames.append(pd.DataFrame({"path": arrays["paths"][plain], "label": arrays["labels"][plain],
                                        "split": split}))
    rows = pd.concat(frames, ignore_index=True)
    index = read_index(index_path).set_index("path")
    unknown = rows.loc[~rows["path"].isin(index.index), "path"]
    if len(unknown):
        raise PipelineError(f"{features_dir}: {unknown.iloc[0]} is not in {index_path}; "
                            f"rerun dvc repro features@{features_dir.name}")
    rows = rows.join(index[["kind", "source", "subject"]], on="path")
    return Pool(features=np.concatenate(features), rows=rows)
