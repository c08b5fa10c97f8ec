"""A synthetic archive laid out like Kaggle's, and its ground truth."""

import csv
import logging
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.core.files import replacing
from pipeline.core.params import SynthParams
from pipeline.mri.anatomy import atrophy_range, load_template, subject_slices
from pipeline.mri.forking import frozen_for_fork
from pipeline.mri.layout import ORIGINAL_PREFIXES, archive_folders

TRUTH_COLUMNS = ("path", "kind", "label", "source", "subject")
COPY_SIZES = ((180, 180), (200, 190))  # (width, height), as in Kaggle's augmented set
UNUSED_NOTE = "README.txt"  # all the demo folder holds when the run reads other images
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TruthRow:
    path: str
    kind: str
    label: str
    source: str
    subject: str


def write_archive(root: Path, classes: tuple[str, ...], synth: SynthParams) -> list[TruthRow]:
    """Write originals, augmented copies and duplicates under `root`; return the ground truth."""
    if root.exists():
        shutil.rmtree(root)
    streams = np.random.SeedSequence(synth.seed).spawn(len(classes))
    jobs = [(root, rank, len(classes), synth, stream) for rank, stream in enumerate(streams)]
    jobs.sort(key=lambda job: -synth.subjects[job[1]][1])  # the largest classes start first
    with frozen_for_fork(), ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
        by_rank = dict(zip((job[1] for job in jobs), pool.map(_write_class, *zip(*jobs))))
    truth = [row for rank in sorted(by_rank) for row in by_rank[rank]]
    truth += _write_duplicates(root, [row for row in truth if row.kind == "copy"], synth.duplicates, synth.seed)
    return sorted(truth, key=lambda row: row.path)


def _write_class(root: Path, rank: int, n_classes: int, synth: SynthParams,
                 stream: np.random.SeedSequence) -> list[TruthRow]:
    """One class's originals and copies from its own random stream, so classes can be written in parallel."""
    originals_dir, copies_dir = (root / folder for folder in archive_folders(synth.layout))
    label, n_subjects = synth.subjects[rank]
    rng = np.random.default_rng(stream)
    originals = _write_originals(root, originals_dir / label, label, rank, n_classes, n_subjects, synth, rng)
    return originals + _write_copies(root, copies_dir / label, originals, synth.copies_per_class, rng)


def write_unused(root: Path, reason: str) -> None:
    """In place of a demo archive that no stage reads: a folder holding only a note that says why."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / UNUSED_NOTE).write_text(f"No demo archive: {reason}.\n", encoding="utf-8")


def write_truth(path: Path, truth: list[TruthRow]) -> None:
    """Write the ground truth CSV atomically."""
    with replacing(path) as partial, partial.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        writer.writerows((row.path, row.kind, row.label, row.source, row.subject) for row in truth)


def _write_originals(root, folder, label, rank, n_classes, n_subjects, synth, rng) -> list[TruthRow]:
    """Kaggle's originals: grayscale JPEG 176x208, slice-major `<prefix><i>.jpg` names (or opaque ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    template = load_template()
    low, high = atrophy_range(rank, n_classes)
    stems = _original_stems(label, rank, n_subjects, synth)
    rows = []
    for subject in tqdm(range(n_subjects), desc=f"synth {label}", unit="subject"):
        slices = subject_slices(template, rng.uniform(low, high), synth.slices, rng)
        for index, pixels in enumerate(slices):
            path = folder / f"{stems[index * n_subjects + subject]}.jpg"
            Image.fromarray(pixels, mode="L").save(path, quality=95)
            relative = path.relative_to(root).as_posix()
            rows.append(TruthRow(relative, "original", label, relative, f"{label}-{subject:03d}"))
    return rows


def _original_stems(label: str, rank: int, n_subjects: int, synth: SynthParams) -> list[str]:
    """File stems of a class's originals in slice-major order: `<prefix><i>`, or with `synth.opaque_names`
    32 hex digits that carry no subject (a UUID without its dashes, so a plain folder does not take it for a copy).

    Opaque names come from a stream of their own, so the pixels are the same either way.
    """
    count = n_subjects * synth.slices
    if not synth.opaque_names:
        prefix = ORIGINAL_PREFIXES.get(label, label.lower())
        return [f"{prefix}{index}" for index in range(count)]
    rng = np.random.default_rng([synth.seed, 2, rank])
    return [_uuid(rng).replace("-", "") for _ in range(count)]


def _write_copies(root, folder, originals, count, rng) -> list[TruthRow]:
    """Kaggle-style augmented copies: RGB JPEG, UUID names, geometric and photometric changes."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for _ in range(count):
        source = originals[rng.integers(len(originals))]
        with Image.open(root / source.path) as image:
            copy = augment(image.convert("L"), rng)
        path = folder / f"{_uuid(rng)}.jpg"
        copy.save(path, quality=int(rng.integers(70, 96)))
        rows.append(TruthRow(path.relative_to(root).as_posix(), "copy", source.label, source.path, source.subject))
    return rows


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Flip, rotate, zoom, stretch, brightness, contrast and grey lift; an RGB image of a Kaggle size."""
    width, height = COPY_SIZES[rng.integers(len(COPY_SIZES))]
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.15:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    angle = np.radians(rng.uniform(-15, 15))
    zoom = rng.uniform(0.85, 1.15)
    stretch = rng.uniform(0.92, 1.08)
    sx, sy = zoom * stretch, zoom / stretch
    cos, sin = np.cos(angle), np.sin(angle)
    # Inverse map (output -> input) about the centre, as PIL's affine transform expects.
    a, b, d, e = cos / sx, sin / sx, -sin / sy, cos / sy
    cx, cy = width / 2, height / 2
    shift_x, shift_y = rng.uniform(-6, 6, size=2)
    c = cx - a * (cx + shift_x) - b * (cy + shift_y)
    f = cy - d * (cx + shift_x) - e * (cy + shift_y)
    image = image.transform((width, height), Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * rng.uniform(0.7, 1.35)
    mean = pixels.mean()
    pixels = np.clip((pixels - mean) * rng.uniform(0.8, 1.2) + mean, 0, 255)
    if rng.random() < 0.4:
        lift = rng.uniform(20, 70)
        pixels = lift + pixels * (255.0 - lift) / 255.0
    gray = np.clip(pixels, 0, 255).round().astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _write_duplicates(root, copies, count, seed) -> list[TruthRow]:
    """Byte-identical extra copies of some copies, like the archive's duplicate groups."""
    rng = np.random.default_rng([seed, 1])
    rows = []
    for index in rng.choice(len(copies), size=min(count, len(copies)), replace=False):
        original = copies[index]
        path = (root / original.path).with_name(f"{_uuid(rng)}.jpg")
        shutil.copyfile(root / original.path, path)
        rows.append(TruthRow(path.relative_to(root).as_posix(), "copy", original.label, original.source,
                             original.subject))
    return rows


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))
