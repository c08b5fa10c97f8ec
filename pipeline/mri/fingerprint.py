"""Scans' fingerprints, for finding the original an augmented copy was made from.

Every scan is first resized to the originals' frame (a copy of another size is a resized
original, so this undoes that stretch) and reduced. The brain's silhouette then fixes a frame:
its centroid, and its spread along each image axis (undoing shift, zoom and stretch).
Subtracting the background and normalising undoes brightness, contrast and grey lift.

Two things are read in that frame:
- a key: angular Fourier magnitudes on rings around the centroid, unchanged by rotation and
  flips, to find a few candidate originals quickly;
- views: the brain resampled on a grid, upright or turned by given angles; a copy's views
  against an original's under each flip score a match exactly. A view is stored as four
  mirror parts, the sums and differences of its four quadrants mirrored onto one: an
  orthonormal change of basis, so dot products are unchanged, and flipping a view only
  changes the signs of its parts (FLIP_SIGNS), so all four flips cost one dot product.

Scans are fingerprinted in batches of one frame, each step one array operation over the batch;
no scan's result depends on the others in its batch. Exact copies need none of this: their decoded
pixels are the same (`pixel_digest`), whichever source they come from.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.imaging.reader import decode_image

WORK_SIDE = 40  # longer side of the reduced frame, in pixels
SIDE = 28  # views are SIDE x SIDE samples
REACH = 2.2  # views span this many standard deviations of the silhouette each way
RING_RADII = np.linspace(0.15, 2.1, 12)
RING_ANGLES = np.linspace(0.0, 2.0 * np.pi, 32, endpoint=False)
HARMONICS = 6
KEY_SIZE = len(RING_RADII) * HARMONICS
VIEW_SIZE = SIDE * SIDE
FLIP_SIGNS = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float32)  # none, V, H, both
_AXIS = np.linspace(-REACH, REACH, SIDE, dtype=np.float32)
_GRID = np.stack(np.meshgrid(_AXIS, _AXIS, indexing="ij")).reshape(2, -1)
_RINGS = np.stack([np.outer(RING_RADII, np.cos(RING_ANGLES)), np.outer(RING_RADII, np.sin(RING_ANGLES))])
_RINGS = _RINGS.reshape(2, -1).astype(np.float32)
UNIFORM = "no brain found: the image is nearly uniform"
TOO_SMALL = "no brain found: the bright area is too small"


@dataclass(frozen=True)
class Fingerprints:
    keys: np.ndarray  # float32 (n, KEY_SIZE), each unit norm
    views: np.ndarray  # float32 (n, n_angles, VIEW_SIZE) in mirror parts, each zero-mean and unit norm
    blank: list[str]  # per scan, why no brain was found in it; '' when one was


def pixel_digest(pixels: np.ndarray) -> str:
    """Equal for two decoded images exactly when they are pixel-identical: a digest of the pixels and their shape."""
    return hashlib.sha1(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def frame_shape(reference: tuple[int, int]) -> tuple[int, int]:
    """The reduced frame (rows, columns) for originals of shape `reference` (rows, columns)."""
    rows, cols = reference
    scale = WORK_SIDE / max(rows, cols)
    return max(8, round(rows * scale)), max(8, round(cols * scale))


def upright_views(root: Path, paths: list[str]) -> np.ndarray:
    """The upright views (n, VIEW_SIZE) of readable scans under `root`, in the frame of the commonest size."""
    images = [decode_image(root / path) for path in paths]
    frame = frame_shape(Counter(image.size[::-1] for image in images).most_common(1)[0][0])
    return fingerprints(np.stack([reduce(image, frame) for image in images]), np.zeros(1)).views[:, 0]


def reduce(image: Image.Image, frame: tuple[int, int]) -> np.ndarray:
    """A grayscale scan resized to `frame` (rows, columns)."""
    return np.asarray(image.resize(frame[::-1], Image.Resampling.BILINEAR))


def fingerprints(reduced: np.ndarray, angles: np.ndarray) -> Fingerprints:
    """The keys and the views at `angles` (radians) of reduced scans stacked (n, rows, columns)."""
    work = reduced.astype(np.float32)
    background, peak = _levels(work)
    silhouette = _silhouette(work, background, peak)
    centre, spread, area = _moments(silhouette)
    centre, spread = centre.astype(np.float32), spread.astype(np.float32)
    work -= background.astype(np.float32)[:, None, None]
    keys, key_norm = _ring_keys(work, centre, spread)
    views, view_norm = _views(work, centre, spread, angles)
    blank = np.where(
        peak - background < 8, UNIFORM, np.where(area < 16, TOO_SMALL, np.where(key_norm * view_norm == 0, UNIFORM, ""))
    )
    return Fingerprints(keys=keys, views=views, blank=blank.tolist())


def silhouettes(reduced: np.ndarray) -> np.ndarray:
    """The brain's silhouette (boolean, same shape) in reduced scans stacked (n, rows, columns of at most 53)."""
    work = reduced.astype(np.float32)
    return _silhouette(work, *_levels(work))


def _levels(work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each scan's background (the median of its border) and peak (its 99th percentile)."""
    border = np.concatenate([work[:, 0], work[:, -1], work[:, :, 0], work[:, :, -1]], axis=1)
    return np.median(border, axis=1).astype(np.float64), _percentile(work.reshape(len(work), -1), 99).astype(np.float64)


def _silhouette(work: np.ndarray, background: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """The pixels a fifth of the way from background to peak or brighter, every gap between them closed."""
    return _filled(work > (background + 0.2 * (peak - background))[:, None, None])


def _percentile(values: np.ndarray, q: float) -> np.ndarray:
    """np.percentile(values, q, axis=1), partitioning only about the two ranks it interpolates between."""
    rank = q / 100 * (values.shape[1] - 1)
    low = int(rank)
    high = min(low + 1, values.shape[1] - 1)
    part = np.partition(values, [low, high], axis=1)
    return part[:, low] + (part[:, high] - part[:, low]) * (rank - low)


def _filled(mask: np.ndarray) -> np.ndarray:
    """The masks with every gap closed that lies between foreground along a row and a column."""
    return _spans(mask) & _spans(mask.swapaxes(1, 2)).swapaxes(1, 2)


def _spans(mask: np.ndarray) -> np.ndarray:
    """Each row of the masks set from its first set pixel to its last, a row being one 64-bit word."""
    n, rows, width = mask.shape  # width up to 53, for float64 to find the highest bit exactly
    words = np.zeros((n, rows, 8), np.uint8)
    words[..., : (width + 7) // 8] = np.packbits(mask, axis=2, bitorder="little")
    bits = words.view("<u8")[..., 0]
    lowest = bits & (~bits + np.uint64(1))
    above_highest = np.uint64(1) << np.frexp(bits.astype(np.float64))[1].astype(np.uint64)
    spans = np.where(bits > 0, above_highest - lowest, np.uint64(0))
    return np.unpackbits(spans[..., None].view(np.uint8), axis=2, count=width, bitorder="little").view(bool)


def _moments(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each mask's centroid and spread (n, 2), as (row, column), and its area (n,)."""
    counts = [masks.sum(axis=2), masks.sum(axis=1)]  # per row, per column
    area = counts[0].sum(axis=1)
    total = np.maximum(area, 1).astype(np.float64)[:, None]
    positions = [np.arange(count.shape[1], dtype=np.float64) for count in counts]
    centre = np.stack([(count * position).sum(axis=1) for count, position in zip(counts, positions)], axis=1) / total
    square = np.stack([(count * position**2).sum(axis=1) for count, position in zip(counts, positions)], axis=1) / total
    spread = np.sqrt(np.maximum(square - centre**2, 0.0))
    return centre, np.maximum(spread, 0.5), area


def _sample(work: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, m) of images (n, h, w) at (rows, cols) (n, m), taking zero beyond the edges."""
    n, height, width = work.shape
    padded = np.zeros((n, height + 1, width + 1), np.float32)  # a zero after each row and column
    padded[:, :-1, :-1] = work
    flat = padded.ravel()
    step = width + 1
    corners = np.zeros((flat.size, 4), np.float32)  # each pixel, its right, lower and lower-right neighbours
    for column, offset in enumerate((0, 1, step, step + 1)):
        corners[: flat.size - offset, column] = flat[offset:]
    outside = (rows < 0) | (rows > height - 1) | (cols < 0) | (cols > width - 1)
    rows = np.clip(rows, 0, height - 1)
    cols = np.clip(cols, 0, width - 1)
    top, left = np.floor(rows), np.floor(cols)
    rows -= top
    cols -= left
    index = (top * step + left).astype(np.int32) + (np.arange(n, dtype=np.int32) * padded[0].size)[:, None]
    a, b, c, d = np.moveaxis(corners.view("V16").ravel().take(index).view(np.float32).reshape(*index.shape, 4), -1, 0)
    upper = a + cols * (b - a)
    samples = upper + rows * (c + cols * (d - c) - upper)
    samples[outside] = 0
    return samples


def _ring_keys(work: np.ndarray, centre: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rings = [_RINGS[axis] * spread[:, axis, None] + centre[:, axis, None] for axis in (0, 1)]
    samples = _sample(work, *rings).reshape(len(work), len(RING_RADII), len(RING_ANGLES))
    magnitudes = np.abs(np.fft.rfft(samples, axis=2))[:, :, :HARMONICS].reshape(len(work), -1)
    return _unit(magnitudes.astype(np.float32))


def _views(work: np.ndarray, centre: np.ndarray, spread: np.ndarray, angles: np.ndarray):
    cos, sin = np.cos(angles).astype(np.float32)[:, None], np.sin(angles).astype(np.float32)[:, None]
    along = [(spread[:, axis, None] * _GRID[axis])[:, None, :] for axis in (0, 1)]  # (n, 1, d)
    rows = cos * along[0] - sin * along[1] + centre[:, 0, None, None]
    cols = sin * along[0] + cos * along[1] + centre[:, 1, None, None]
    views = _sample(work, rows.reshape(len(work), -1), cols.reshape(len(work), -1))
    views = views.reshape(len(work), len(angles), -1)
    views -= views.mean(axis=2, keepdims=True)
    views, norms = _unit(_mirror_parts(views))
    return views, norms.min(axis=1)


def _mirror_parts(views: np.ndarray) -> np.ndarray:
    """Views (..., VIEW_SIZE) as their four mirror parts, each (SIDE / 2)^2 long, one after another."""
    square = views.reshape(*views.shape[:-1], SIDE, SIDE)
    half = SIDE // 2
    a, b = square[..., :half, :half], square[..., :half, ::-1][..., :half]
    c, d = square[..., ::-1, :][..., :half, :half], square[..., ::-1, ::-1][..., :half, :half]
    parts = np.stack([a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d], axis=-3) / 2
    return parts.reshape(views.shape)


def _unit(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors scaled to unit norm along the last axis (zero ones left zero), and their norms."""
    norms = np.linalg.norm(vectors, axis=-1)
    return vectors / np.where(norms == 0, 1, norms)[..., None], norms
