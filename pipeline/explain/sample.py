"""A fixed, seeded sample of a split's scans per class, explained: the grid of overlays and where the maps lie."""

from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure

from pipeline.explain.attention import attention_summary, brain_masks
from pipeline.explain.gradcam import gradcam
from pipeline.explain.overlays import grid_figure
from pipeline.imaging.tfrecords import make_dataset


def read_split(tfrecord_dir: Path, split: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A split's images (n, side, side, 3 floats in [0, 255], as inference reads them), labels and paths."""
    batches = list(make_dataset(tfrecord_dir, split, batch_size, with_ids=True))
    if not batches:
        return np.zeros((0, 1, 1, 3), np.float32), np.zeros(0, int), []
    return (np.concatenate([images.numpy() for images, _, _ in batches]),
            np.concatenate([labels.numpy() for _, labels, _ in batches]),
            [path.decode() for _, _, ids in batches for path in ids["path"].numpy()])


def sample_per_class(labels: np.ndarray, n_classes: int, per_class: int, seed: int) -> list[list[int]]:
    """Per class, up to `per_class` indices of its scans drawn without replacement (seeded), in split order."""
    rng = np.random.default_rng(seed)
    rows = []
    for class_index in range(n_classes):
        members = np.flatnonzero(labels == class_index)
        rows.append(sorted(rng.choice(members, min(per_class, len(members)), replace=False).tolist()))
    return rows


def explain_sample(model: keras.Model, images: np.ndarray, labels: np.ndarray, rows: list[list[int]],
                   classes: tuple[str, ...], brain: bool, title: str) -> tuple[Figure, dict]:
    """The grid of the sampled scans' Grad-CAM maps (for each one's predicted class), and what the metrics file
    holds: how many scans, and with `brain` (MRI scans) the maps' share inside the brain against its share."""
    chosen = [index for row in rows for index in row]
    explanation = gradcam(model, images[chosen])
    position = {index: place for place, index in enumerate(chosen)}
    local_rows = [[position[index] for index in row] for row in rows]
    figure = grid_figure(images[chosen], explanation.maps, local_rows, classes, labels[chosen],
                         explanation.classes, title)
    metrics = {"scans": len(chosen), "per_class": {name: len(row) for name, row in zip(classes, rows)},
               "predicted_correctly": int((explanation.classes == labels[chosen]).sum())}
    if brain and chosen:
        metrics.update(attention_summary(explanation.maps, brain_masks(images[chosen])))
    return figure, metrics
