"""MRI-like archives from procedural anatomy, unlike `synth` on purpose.

`synth` warps one template (MNI152) a little per subject and cuts 2 mm slices. Here every subject
has an anatomy of its own, drawn as functions of space: a brain whose outline, folding (a sum of
random plane waves), cortical thickness, ventricles and deep nuclei are the subject's own. Each
subject is then scanned with its own slice spacing (drawn over `spacing`, in mm), a tilt, an
elastic warp, a bias field, noise and a contrast curve, and its originals get opaque names.
Copies are made by `tests.other_generator`'s Keras-like augmenter. The truth file is `synth`'s.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from pipeline.core.paths import truth_file
from pipeline.mri.synth import TruthRow, write_truth
from tests.other_generator import keras_style_copy

CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
WAVES = 24  # plane waves in each folding field


@dataclass(frozen=True)
class Setting:
    spacing: tuple[float, float] = (1.0, 5.0)  # slice spacing drawn per subject, mm
    warp: float = 3.0  # elastic warp amplitude, mm
    tilt: float = 8.0  # rotation of the slab, degrees either way about each axis
    bias: float = 0.25  # bias field amplitude (multiplicative)
    noise: float = 0.03  # Gaussian noise on the brain, in units of the white-matter intensity
    gamma: tuple[float, float] = (0.7, 1.4)  # contrast curve drawn per subject


@dataclass(frozen=True)
class Anatomy:
    radii: np.ndarray  # semi-axes (x, y, z), mm
    outline: tuple  # (directions, phases) of the outline's low-order wobble
    folds: tuple  # (wave vectors, phases) of the gyral field
    sulci: tuple  # (wave vectors, phases) of the sulcal field
    thickness: float  # cortical thickness, mm
    ventricles: np.ndarray  # (centre y, centre z, half-gap x, radii x, y, z)
    nuclei: np.ndarray  # (x, y, z, radius) per deep nucleus, mirrored left and right
    atrophy: float


def waves(rng: np.random.Generator, wavelength: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """WAVES random plane waves: wave vectors (WAVES, 3) in rad/mm and phases."""
    directions = rng.normal(size=(WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = rng.uniform(*wavelength, size=(WAVES, 1))
    return directions * 2 * np.pi / lengths, rng.uniform(0, 2 * np.pi, WAVES)


def field(points: np.ndarray, wave: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A sum of plane waves at points (..., 3), of unit variance."""
    vectors, phases = wave
    return np.sin(points @ vectors.T + phases).sum(axis=-1) * np.sqrt(2 / len(phases))


def draw_anatomy(rng: np.random.Generator, atrophy: float, height: float) -> Anatomy:
    """A subject's own brain; `height` is the smallest vertical semi-axis its slab needs."""
    radii = np.array([rng.uniform(60, 72), rng.uniform(78, 95), max(rng.uniform(58, 70), height)])
    ventricles = np.array([rng.uniform(-5, 10), rng.uniform(5, 15), rng.uniform(3, 6),
                           rng.uniform(3, 6) + 5 * atrophy, rng.uniform(14, 22) + 6 * atrophy,
                           rng.uniform(7, 12) + 4 * atrophy])
    nuclei = np.column_stack([rng.uniform(12, 25, 3), rng.uniform(-15, 20, 3), rng.uniform(-15, 5, 3),
                              rng.uniform(5, 10, 3)])
    return Anatomy(radii=radii, outline=waves(rng, (120, 250)), folds=waves(rng, (14, 26)),
                   sulci=waves(rng, (10, 18)), thickness=rng.uniform(2.5, 4.5) - 1.0 * atrophy,
                   ventricles=ventricles, nuclei=nuclei, atrophy=atrophy)


def intensity(anatomy: Anatomy, points: np.ndarray) -> np.ndarray:
    """T1-like intensity at points (..., 3) in mm: white matter 1, grey 0.6, fluid 0.1, outside 0."""
    scaled = points / anatomy.radii
    radius = np.linalg.norm(scaled, axis=-1) * (1 + 0.05 * field(points, anatomy.outline))
    depth = (1 - radius) * anatomy.radii.mean() + 1.5 * field(points, anatomy.folds)
    image = np.where(depth > anatomy.thickness, 1.0, 0.6)
    sulcus = (np.abs(field(points, anatomy.sulci)) < 0.15 + 0.2 * anatomy.atrophy) & (depth < 14)
    image = np.where(sulcus, 0.15, image)
    x, y, z = np.moveaxis(points, -1, 0)
    image = np.where((np.abs(x) < 1.0 + 2 * anatomy.atrophy) & (z > 5) & (depth < 40), 0.1, image)  # midline fissure
    for x0, y0, z0, size in anatomy.nuclei:
        inside = ((np.abs(x) - x0) ** 2 + (y - y0) ** 2 + (z - z0) ** 2) < size**2
        image = np.where(inside, 0.7, image)
    cy, cz, gap, rx, ry, rz = anatomy.ventricles
    horn = ((np.abs(x) - gap - rx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2
    image = np.where(horn < 1 + 0.3 * field(points, anatomy.sulci) * 0.3, 0.1, image)
    return np.where(depth > 0, image, 0.0)


def scan_subject(anatomy: Anatomy, spacing: float, slices: int, shape: tuple[int, int], pixel: float,
                 setting: Setting, rng: np.random.Generator) -> np.ndarray:
    """Axial slices (slices, rows, cols) uint8 of one subject: tilted, warped, biased, noisy."""
    rows, cols = shape
    heights = (np.arange(slices) - (slices - 1) / 2) * spacing + rng.uniform(-5, 5)
    y = (np.arange(rows) - (rows - 1) / 2) * pixel
    x = (np.arange(cols) - (cols - 1) / 2) * pixel
    z, y, x = np.meshgrid(heights, -y, x, indexing="ij")
    points = np.stack([x, y, z], axis=-1)
    tilt = Rotation.from_euler("xyz", rng.uniform(-setting.tilt, setting.tilt, 3), degrees=True)
    points = tilt.apply(points.reshape(-1, 3)).reshape(points.shape)
    warp = [waves(rng, (40, 90)) for _ in range(3)]
    points = points + setting.warp * np.stack([field(points, wave) for wave in warp], axis=-1) / np.sqrt(2)
    image = intensity(anatomy, points)
    brain = image > 0
    image = image * (1 + setting.bias * field(points, waves(rng, (150, 300))) / 2)
    image = np.clip(image + brain * rng.normal(0, setting.noise, image.shape), 0, None)
    image = image ** rng.uniform(*setting.gamma) * rng.uniform(0.75, 0.95)
    return np.clip(image * 255, 0, 255).round().astype(np.uint8)


def write_other_archive(root: Path, subjects: dict[str, int], slices: int, copies_per_class: int, seed: int,
                        setting: Setting = Setting(), shape: tuple[int, int] = (208, 176),
                        pixel: float = 1.0) -> list[TruthRow]:
    """A v1 archive (OriginalDataset/, AugmentedAlzheimerDataset/) under `root` with opaque names, and its truth
    (each subject's originals in slice order)."""
    rng = np.random.default_rng(seed)
    truth = []
    for rank, label in enumerate(CLASSES):
        originals = root / "OriginalDataset" / label
        copies = root / "AugmentedAlzheimerDataset" / label
        originals.mkdir(parents=True)
        copies.mkdir(parents=True)
        written = []
        for subject in range(subjects.get(label, 0)):
            spacing = rng.uniform(*setting.spacing)
            anatomy = draw_anatomy(rng, rng.uniform(rank / 4, (rank + 1.5) / 4), 0.55 * spacing * slices)
            for pixels in scan_subject(anatomy, spacing, slices, shape, pixel, setting, rng):
                path = originals / f"{rng.bytes(16).hex()}.jpg"
                Image.fromarray(pixels, mode="L").save(path, quality=int(rng.integers(85, 97)))
                written.append(TruthRow(path.relative_to(root).as_posix(), "original", label,
                                        path.relative_to(root).as_posix(), f"{label}-{subject:03d}"))
        for _ in range(copies_per_class if written else 0):
            source = written[rng.integers(len(written))]
            with Image.open(root / source.path) as image:
                data = keras_style_copy(np.asarray(image), rng)
            path = copies / f"{rng.bytes(16).hex()[:8]}-{rng.bytes(4).hex()}-4abc-8def-{rng.bytes(6).hex()}.jpg"
            path.write_bytes(data)
            truth.append(TruthRow(path.relative_to(root).as_posix(), "copy", label, source.path, source.subject))
        truth += written
    write_truth(truth_file(root), sorted(truth, key=lambda row: row.path))
    return truth
