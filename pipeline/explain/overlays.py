"""Grad-CAM maps drawn over the scans: one grid of classes by scans for a stage, one PNG per scan for predict, and
the scan and its overlay as PNGs of the scan's own side for the web app."""

import io
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from pipeline.analysis.charts import save

ALPHA = 0.45  # opacity of the map over the scan
CELL_INCHES = 1.9


def gray(image: np.ndarray) -> np.ndarray:
    """A scan (side, side[, 3]) in [0, 255] as one gray uint8 channel."""
    return np.round(np.clip(image.mean(axis=-1) if image.ndim == 3 else image, 0, 255)).astype(np.uint8)


def overlay_pixels(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The scan in gray with its map (in [0, 1], the scan's side) over it in colour: RGB uint8 of the scan's side."""
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    blended = (1 - ALPHA) * gray(image)[..., None] + ALPHA * colours
    return np.round(blended).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A gray (side, side) or RGB (side, side, 3) uint8 image as PNG bytes, pixel for pixel, without metadata."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def draw(axes, image: np.ndarray, heat: np.ndarray, title: str) -> None:
    """One scan in gray with its map over it in colour, titled."""
    axes.imshow(overlay_pixels(image, heat), interpolation="nearest")
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
