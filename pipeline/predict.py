"""`python -m pipeline predict scan.jpg ...`: each trained backbone's class probabilities for some scans."""

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.evaluate import load_model
from pipeline.params import load_params
from pipeline.preprocess import load_image
from pipeline.train import MODELS_DIR


def main(params_path: Path, *scans: str) -> None:
    params = load_params(params_path)
    table = predict_scans([Path(scan) for scan in scans], MODELS_DIR, params.backbones, params.data.classes)
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))


def model_input(scans: list[Path], size: int) -> np.ndarray:
    """Scans as the models saw them in training: the project's reader, stretched to size, gray tiled to 3 channels."""
    for scan in scans:
        if not scan.is_file():
            raise PipelineError(f"{scan}: no such file")
    pixels = np.stack([load_image(scan, size) for scan in scans]).astype(np.float32)
    return np.repeat(pixels[..., None], 3, axis=-1)


def predict_scans(scans: list[Path], models_dir: Path, backbones: tuple[str, ...],
                  classes: tuple[str, ...]) -> pd.DataFrame:
    """One row per scan and backbone: scan, backbone, predicted class, prob_<class>."""
    frames = []
    for backbone in backbones:
        model, _ = load_model(models_dir / backbone, backbone)
        probabilities = np.asarray(model.predict_on_batch(model_input(scans, model.input_shape[1])), np.float64)
        if probabilities.shape[1] != len(classes):
            raise PipelineError(f"{backbone}'s model gives {probabilities.shape[1]} class probabilities for "
                                f"{len(classes)} data.classes; rerun its training stages")
        frame = pd.DataFrame({"scan": [str(scan) for scan in scans], "backbone": backbone,
                              "predicted": np.array(classes)[probabilities.argmax(axis=1)]})
        for index, name in enumerate(classes):
            frame[f"prob_{name}"] = probabilities[:, index]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
