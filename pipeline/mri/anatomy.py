"""Synthetic subjects from the MNI152 template that the nilearn wheel ships."""

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import ndimage

from pipeline.core.errors import PipelineError

TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
SLICE_SHAPE = (208, 176)  # rows (anterior to posterior) x columns (left to right), like Kaggle
SLICE_SPACING_MM = 2.0
FIRST_SLICE_MM = -18.0  # height of the lowest slice above the brain's centre
# Atrophy per class, as (low, high); neighbouring stages overlap.
ATROPHY_RANGES = ((0.0, 0.4), (0.25, 0.6), (0.45, 0.8), (0.65, 1.0))


@dataclass(frozen=True)
class Template:
    t1: np.ndarray  # float32 intensities in [0, 1]
    gm: np.ndarray  # float32 grey-matter probability
    depth: np.ndarray  # float32 mm from the brain's outer surface (0 outside)
    centre: np.ndarray  # brain centroid, voxel coordinates
    ventricles: np.ndarray  # lateral ventricles' centroid, voxel coordinates


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Read the T1 and grey-matter volumes and derive the maps atrophy needs."""
    t1, gm, wm = (_read_volume(name) for name in ("t1", "gm", "wm"))
    brain = ndimage.binary_fill_holes((gm + wm) > 0.2)
    depth = ndimage.distance_transform_edt(brain).astype(np.float32)
    centre = np.array(ndimage.center_of_mass(brain))
    # Ventricles: dark tissue deep inside the brain.
    deep_dark = (t1 < 0.35) & (depth > 20)
    ventricles = np.array(ndimage.center_of_mass(deep_dark))
    return Template(t1=t1 * brain, gm=gm, depth=depth, centre=centre, ventricles=ventricles)


def _read_volume(name: str) -> np.ndarray:
    import nibabel

    source = resources.files("nilearn.datasets") / "data" / TEMPLATE.format(name)
    if not source.is_file():
        raise PipelineError(f"MNI152 template {TEMPLATE.format(name)} not found in the nilearn wheel")
    with resources.as_file(source) as path:
        return np.asarray(nibabel.load(path).dataobj, dtype=np.float32) / 255.0


def atrophy_range(class_rank: int, n_classes: int) -> tuple[float, float]:
    """The atrophy range of the class at this ordinal rank."""
    if n_classes == len(ATROPHY_RANGES):
        return ATROPHY_RANGES[class_rank]
    low = class_rank / n_classes
    return (max(0.0, low - 0.1), min(1.0, low + 1.0 / n_classes + 0.1))


def subject_slices(template: Template, atrophy: float, n_slices: int, rng: np.random.Generator) -> np.ndarray:
    """The axial slices of one synthetic subject, uint8, shape (n_slices, 208, 176)."""
    grid = _slice_grid(template, n_slices)
    coords = _subject_warp(template, grid, atrophy, rng)
    t1 = ndimage.map_coordinates(template.t1, coords, order=1)
    gm = ndimage.map_coordinates(template.gm, coords, order=1)
    depth = ndimage.map_coordinates(template.depth, coords, order=1)
    # Thinner cortex and wider sulci: grey matter darkens, the outer rim recedes.
    image = t1 * (1.0 - 0.45 * atrophy * gm)
    image *= np.clip((depth - 3.0 * atrophy) / 1.5, 0.0, 1.0)
    brain = image > 0.02
    image *= _smooth_field(rng, grid.shape[1:], scale=0.12)
    image = image.astype(np.float64) ** rng.uniform(0.9, 1.1)  # float32 powers round differently by CPU
    image += brain * rng.normal(0.0, 0.015, size=image.shape)
    return np.clip(image * 255.0, 0, 255).round().astype(np.uint8)


def _slice_grid(template: Template, n_slices: int) -> np.ndarray:
    """Voxel coordinates of the output slices before any subject warp, shape (3, n, rows, cols)."""
    rows, cols = SLICE_SHAPE
    heights = FIRST_SLICE_MM + SLICE_SPACING_MM * np.arange(n_slices)
    r, c = np.arange(rows) - (rows - 1) / 2, np.arange(cols) - (cols - 1) / 2
    z, y, x = np.meshgrid(heights, -r, c, indexing="ij")
    centre = template.centre
    return np.stack([x + centre[0], y + centre[1] + 8.0, z + centre[2]]).astype(np.float32)


def _subject_warp(template: Template, grid: np.ndarray, atrophy: float, rng: np.random.Generator) -> np.ndarray:
    """Where each output voxel samples the template for this subject."""
    centre = template.centre.reshape(3, 1, 1, 1)
    angles = np.radians(rng.uniform([-3, -3, -6], [3, 3, 6]))
    scale = rng.uniform(0.92, 1.08, size=3)
    matrix = _rotation(angles) @ np.diag(1.0 / scale)
    shift = rng.uniform(-3, 3, size=3).reshape(3, 1, 1, 1)
    points = np.tensordot(matrix, grid - centre, axes=1) + centre + shift
    # Enlarged ventricles: sample nearer the ventricles' centre so they appear bigger.
    ventricles = template.ventricles.reshape(3, 1, 1, 1)
    offset = points - ventricles
    pull = 0.45 * atrophy * np.exp(-(offset**2).sum(axis=0) / (2 * 18.0**2))
    points = ventricles + offset * (1.0 - pull)
    elastic = np.stack([_smooth_field(rng, grid.shape[1:], scale=2.5, mean=0.0) for _ in range(3)])
    return (points + elastic).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], scale: float, mean: float = 1.0) -> np.ndarray:
    """A smooth random field over `shape`: coarse Gaussian noise upsampled with splines."""
    coarse = rng.normal(0.0, scale, size=(3, 5, 5))
    factors = [size / coarse_size for size, coarse_size in zip(shape, coarse.shape)]
    return (mean + ndimage.zoom(coarse, factors, order=3, mode="nearest")).astype(np.float32)


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
