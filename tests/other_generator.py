"""Augmentation generators written apart from `synth`, with other conventions and ranges.

They stand in for the archives the developers never saw:
- `other_copy` places copies on the canvas by padding or cropping (never stretched), rotates
  them with scipy, and gives them contrast, brightness, grey lift and JPEG quality from its
  own ranges;
- `keras_style_copy` follows Keras' ImageDataGenerator: one affine map of rotation, shift and
  a zoom of its own on each axis, edges filled with the nearest pixel, then a bicubic resize,
  PIL's brightness and contrast enhancers, and any JPEG chroma subsampling.
"""

import io
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance
from scipy import ndimage


def other_copy(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """One augmented copy of a grayscale original, as RGB JPEG bytes."""
    image = pixels.astype(np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = ndimage.rotate(image, rng.uniform(-12, 12), reshape=False, order=1, mode="constant")
    image = ndimage.zoom(image, rng.uniform(0.88, 1.12), order=1)
    image = _fit(image, (190, 200) if rng.random() < 0.5 else (180, 180))
    image = image * rng.uniform(0.75, 1.3)
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.85, 1.15) + mean
    if rng.random() < 0.5:
        lift = rng.uniform(10, 60)
        image = lift + image * (1 - lift / 255)
    rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(rng.integers(72, 96)))
    return buffer.getvalue()


def keras_style_copy(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """One augmented copy of a grayscale original the way ImageDataGenerator makes them, as RGB JPEG bytes."""
    turn = np.radians(rng.uniform(-12, 12))
    shift = rng.uniform(-0.06, 0.06, size=2) * pixels.shape
    zoom = rng.uniform(0.88, 1.12, size=2)  # rows and columns apart: a stretch as well
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    matrix = rotation @ np.diag(zoom)  # output to input coordinates, about the centre
    centre = np.array(pixels.shape) / 2 + 0.5
    offset = centre + rotation @ shift - matrix @ centre
    image = ndimage.affine_transform(pixels.astype(np.float32), matrix, offset, order=1, mode="nearest")
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.1:
        image = image[::-1]
    copy = Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8)).convert("RGB")
    copy = copy.resize((180, 180) if rng.random() < 0.5 else (200, 190), Image.Resampling.BICUBIC)
    copy = ImageEnhance.Brightness(copy).enhance(rng.uniform(0.75, 1.3))
    copy = ImageEnhance.Contrast(copy).enhance(rng.uniform(0.8, 1.2))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=int(rng.integers(72, 96)), subsampling=int(rng.integers(0, 3)))
    return buffer.getvalue()


def _fit(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre `image` on a black canvas of `shape`, cropping what overflows."""
    canvas = np.zeros(shape, np.float32)
    rows, cols = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    r0, c0 = (image.shape[0] - rows) // 2, (image.shape[1] - cols) // 2
    R0, C0 = (shape[0] - rows) // 2, (shape[1] - cols) // 2
    canvas[R0 : R0 + rows, C0 : C0 + cols] = image[r0 : r0 + rows, c0 : c0 + cols]
    return canvas


def rewrite_copies(archive: Path, truth_path: Path, seed: int, make_copy: Callable) -> None:
    """Replace every copy of a synthetic archive with one by `make_copy`, updating the truth file."""
    truth = pd.read_csv(truth_path, dtype=str)
    rng = np.random.default_rng(seed)
    rows = []
    for row in truth.itertuples(index=False):
        if row.kind != "copy":
            rows.append(row._asdict())
            continue
        (archive / row.path).unlink()
        with Image.open(archive / row.source) as image:
            data = make_copy(np.asarray(image.convert("L")), rng)
        path = Path(row.path).with_name(f"{uuid.UUID(bytes=rng.bytes(16), version=4)}.jpg")
        (archive / path).write_bytes(data)
        rows.append({**row._asdict(), "path": path.as_posix()})
    pd.DataFrame(rows).sort_values("path").to_csv(truth_path, index=False, lineterminator="\n")
