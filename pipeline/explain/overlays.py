"""Grad-CAM maps drawn over the scans: one grid of classes by scans for a stage, one PNG per scan for predict."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pipeline.analysis.charts import save

ALPHA = 0.45  # opacity of the map over the scan
CELL_INCHES = 1.9


def draw(axes, image: np.ndarray, heat: np.ndarray, title: str) -> None:
    """One scan in gray with its map over it in colour, titled."""
    axes.imshow(image.mean(axis=-1) if image.ndim == 3 else image, cmap="gray", vmin=0, vmax=255,
                interpolation="nearest")
    axes.imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=ALPHA, interpolation="nearest")
    axes.set_title(title, fontsize=7)
    axes.set_axis_off()


def grid_figure(images: np.ndarray, maps: np.ndarray, rows: list[list[int]], classes: tuple[str, ...],
                labels: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """A grid with one row per class (`rows`: the indices of its scans), each scan titled with true and predicted
    class; a class without scans gets an empty row."""
    columns = max(1, *(len(row) for row in rows))
    figure = Figure(figsize=(CELL_INCHES * columns, CELL_INCHES * len(rows) + 0.4), layout="constrained")
    figure.suptitle(title, fontsize=9)
    cells = figure.subplots(len(rows), columns, squeeze=False)
    for class_index, row in enumerate(rows):
        for column, axes in enumerate(cells[class_index]):
            if column < len(row):
                index = row[column]
                draw(axes, images[index], maps[index],
                     f"true {classes[labels[index]]}\npredicted {classes[predicted[index]]}")
            else:
                axes.set_axis_off()
                if column == 0:
                    axes.text(0.5, 0.5, f"no test scan of\n{classes[class_index]}", ha="center", va="center",
                              fontsize=7)
    return figure


def write_overlay(image: np.ndarray, heat: np.ndarray, title: str, path: Path) -> None:
    """One scan with its map over it, as a PNG with fixed metadata."""
    figure = Figure(figsize=(3, 3.3), layout="constrained")
    draw(figure.add_subplot(), image, heat, title)
    save(figure, path)
