"""A scan's fingerprint, for finding the original an augmented copy was made from.

Every scan is first resized to the originals' frame (a copy of another size is a resized
original, so this undoes that stretch) and reduced. The brain's silhouette then fixes a frame:
its centroid, and its spread along each image axis (undoing shift, zoom and stretch).
Subtracting the background and normalising undoes brightness, contrast and grey lift.

Two things are read in that frame:
- a key: angular Fourier magnitudes on rings around the centroid, unchanged by rotation and
  flips, to find a few candidate originals quickly;
- views: the brain resampled on a grid, upright or turned by given angles; a copy's upright
  view under each flip against an original's views at each rotation scores a match exactly.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

WORK_SIDE = 40  # longer side of the reduced frame, in pixels
SIDE = 28  # views are SIDE x SIDE samples
REACH = 2.2  # views span this many standard deviations of the silhouette each way
RING_RADII = np.linspace(0.15, 2.1, 12)
RING_ANGLES = np.linspace(0.0, 2.0 * np.pi, 32, endpoint=False)
HARMONICS = 6
_GRID = np.stack(np.meshgrid(np.linspace(-REACH, REACH, SIDE), np.linspace(-REACH, REACH, SIDE), indexing="ij"))
_RINGS = np.stack([np.outer(RING_RADII, np.cos(RING_ANGLES)), np.outer(RING_RADII, np.sin(RING_ANGLES))])


class Blank(ValueError):
    """No brain could be found in the image."""


@dataclass(frozen=True)
class Fingerprint:
    key: np.ndarray  # float32 (len(RING_RADII) * HARMONICS,), unit norm
    views: np.ndarray  # float32 (n_angles, SIDE * SIDE), each zero-mean and unit norm


def frame_shape(reference: tuple[int, int]) -> tuple[int, int]:
    """The reduced frame (rows, columns) for originals of shape `reference` (rows, columns)."""
    rows, cols = reference
    scale = WORK_SIDE / max(rows, cols)
    return max(8, round(rows * scale)), max(8, round(cols * scale))


def fingerprint(pixels: np.ndarray, frame: tuple[int, int], angles: np.ndarray) -> Fingerprint:
    """The key and the views at `angles` (radians) of a grayscale scan."""
    work = np.asarray(Image.fromarray(pixels).resize(frame[::-1], Image.Resampling.BILINEAR), np.float32)
    border = np.concatenate([work[0], work[-1], work[:, 0], work[:, -1]])
    background = float(np.median(border))
    peak = float(np.percentile(work, 99))
    if peak - background < 8:
        raise Blank("no brain found: the image is nearly uniform")
    silhouette = _filled(work > background + 0.2 * (peak - background))
    points = np.argwhere(silhouette).astype(np.float64)
    if len(points) < 16:
        raise Blank("no brain found: the bright area is too small")
    centre, spread = points.mean(axis=0), np.maximum(points.std(axis=0), 0.5)
    work -= background
    return Fingerprint(key=_ring_key(work, centre, spread), views=_views(work, centre, spread, angles))


def _filled(mask: np.ndarray) -> np.ndarray:
    """The mask with every gap closed that lies between foreground along a row and a column."""
    rows = np.maximum.accumulate(mask, axis=1) & np.maximum.accumulate(mask[:, ::-1], axis=1)[:, ::-1]
    cols = np.maximum.accumulate(mask, axis=0) & np.maximum.accumulate(mask[::-1], axis=0)[::-1]
    return rows & cols


def _ring_key(work: np.ndarray, centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
    coords = _RINGS * spread.reshape(2, 1, 1) + centre.reshape(2, 1, 1)
    rings = ndimage.map_coordinates(work, coords, order=1, cval=0.0)
    magnitudes = np.abs(np.fft.rfft(rings, axis=1))[:, :HARMONICS].ravel()
    return _unit(magnitudes)


def _views(work: np.ndarray, centre: np.ndarray, spread: np.ndarray, angles: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angles), np.sin(angles)
    rotations = np.stack([np.stack([cos, -sin]), np.stack([sin, cos])])  # (2, 2, n_angles)
    frames = rotations * spread.reshape(1, 2, 1)
    coords = np.einsum("ija,jrc->iarc", frames, _GRID) + centre.reshape(2, 1, 1, 1)
    views = ndimage.map_coordinates(work, coords, order=1, cval=0.0).reshape(len(angles), -1)
    views -= views.mean(axis=1, keepdims=True)
    return np.stack([_unit(view) for view in views])


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if norm == 0:
        raise Blank("no brain found: the image is nearly uniform")
    return (vector / norm).astype(np.float32)


def flipped(views: np.ndarray) -> np.ndarray:
    """Views (..., SIDE * SIDE) under the four flips (none, vertical, horizontal, both), stacked on axis -2."""
    square = views.reshape(*views.shape[:-1], SIDE, SIDE)
    variants = (square, square[..., ::-1, :], square[..., :, ::-1], square[..., ::-1, ::-1])
    return np.concatenate([variant.reshape(views.shape) for variant in variants], axis=-2)
