"""Grad-CAM maps of each trained model on a user's scans, read exactly as `predict` reads them: for the CLI and the
web app."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.explain.gradcam import Explanation, gradcam
from pipeline.explain.overlays import write_overlay
from pipeline.networks.inference import load_model, read_scans


@dataclass(frozen=True)
class ScanMaps:
    scans: list[Path]  # the scans that could be read, in the order given
    pixels: np.ndarray  # what the model saw (n, side, side, 3) in [0, 255]
    explanation: Explanation  # their maps, for each one's predicted class


def explain_scans(scans: list[Path], models: dict[str, Path], channels: int = 1) -> dict[str, ScanMaps]:
    """Per backbone (`models`: backbone -> model file), the Grad-CAM maps of the scans that read; an unreadable scan
    is left out (`predict_scans` says why)."""
    explained = {}
    for backbone, path in models.items():
        model = load_model(path, backbone)
        pixels, errors = read_scans(scans, model.input_shape[1], channels)
        readable = [scan for scan in scans if scan not in errors]
        explained[backbone] = ScanMaps(readable, pixels, gradcam(model, pixels) if readable else None)
    return explained


def overlay_path(out_dir: Path, backbone: str, scan: Path) -> Path:
    """Where `write_overlays` puts a scan's overlay for a backbone."""
    return out_dir / backbone / f"{scan.name}.png"


def write_overlays(explained: dict[str, ScanMaps], classes: tuple[str, ...], out_dir: Path) -> list[Path]:
    """One PNG per backbone and scan (`overlay_path`): the scan as the model saw it, its map over it, the predicted
    class and its probability in the title; return the paths written."""
    written = []
    for backbone, found in explained.items():
        for index, scan in enumerate(found.scans):
            predicted = found.explanation.classes[index]
            path = overlay_path(out_dir, backbone, scan)
            write_overlay(found.pixels[index], found.explanation.maps[index],
                          f"{backbone}: {classes[predicted]} ({found.explanation.probabilities[index, predicted]:.2f})"
                          f"\n{scan.name}", path)
            written.append(path)
    return written
