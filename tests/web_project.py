"""A project folder as the web app finds it after `dvc repro`, with tiny models instead of trained ones."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import yaml
from PIL import Image

from pipeline.core import paths
from pipeline.imaging.tfrecords import META_NAME
from tests.conftest import ROOT, raw_params
from tests.test_evaluate import SIZE, tiny_model

BACKBONES = yaml.safe_load((ROOT / "params.yaml").read_text())["backbones"]
EPOCHS = 3  # rows each dvclive table starts with


def append_epoch(root: Path, stage: str, backbone: str, step: int) -> None:
    """One epoch's rows in each of a backbone's dvclive tables, written as dvclive appends them."""
    for split in ("train", "eval"):
        for metric in ("loss", "accuracy"):
            path = root / paths.live_plot(stage, backbone, split, metric)
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with path.open("a") as file:
                if new:
                    file.write(f"step\t{metric}\n")
                value = 1.5 / (step + 1) if metric == "loss" else 0.25 + 0.05 * step
                file.write(f"{step}\t{value}\n")


def explainable_tiny_model(centre: float) -> keras.Model:
    """tiny_model(centre) as the pipeline nests a base: a 1x1 convolution that passes the image through and the
    pooling, in a model of their own, then the Dense layer. The same probabilities, and a last convolutional block for
    Grad-CAM, whose map of a class that weighs brightness is then the scan's brightness."""
    block = keras.layers.Conv2D(3, 1, name="block")
    inputs = keras.Input((SIZE, SIZE, 3))
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(block(inputs)), name="base")
    dense = keras.layers.Dense(4, activation="softmax", name="probabilities")
    image = keras.Input((SIZE, SIZE, 3), name="image")
    model = keras.Model(image, dense(base(image)), name="tiny")
    block.set_weights([np.eye(3, dtype=np.float32)[None, None], np.zeros(3, np.float32)])
    dense.set_weights(tiny_model(centre).layers[-1].get_weights())
    return model


def write_project(root: Path, backbones: list[str] = BACKBONES) -> Path:
    """params.yaml (image_size SIZE), dvc.yaml, models/<b>/model.keras (explainable_tiny_model), dvclive files, the
    report and its charts."""
    root.mkdir(parents=True, exist_ok=True)
    raw = raw_params(backbones=backbones, image_size=SIZE)
    (root / paths.PARAMS).write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(ROOT / paths.DVC_YAML, root / paths.DVC_YAML)
    for index, backbone in enumerate(backbones):
        model = root / paths.model_files(backbone).model
        model.parent.mkdir(parents=True, exist_ok=True)
        explainable_tiny_model(12 + 6 * index).save(model)
        for stage in ("train", "finetune"):
            for step in range(EPOCHS):
                append_epoch(root, stage, backbone, step)
            (root / paths.live_metrics(stage, backbone)).write_text(json.dumps({"val_loss": 1.0 + 0.1 * index}))
    (root / paths.TFRECORDS).mkdir(parents=True)  # what the models were trained on: classes and channels
    (root / paths.TFRECORDS / META_NAME).write_text(json.dumps({"classes": raw["data"]["classes"], "channels": 1}))
    (root / paths.REPORT).parent.mkdir(parents=True)
    shutil.copy(ROOT / paths.REPORT, root / paths.REPORT)
    shutil.copytree(ROOT / paths.COMPARE_PLOTS, root / paths.COMPARE_PLOTS)
    return root


def write_scan(path: Path) -> Path:
    """A grayscale JPEG of the demo's original size (176x208) with a bright oval, like a slice."""
    y, x = np.mgrid[0:208, 0:176]
    inside = ((x - 88) / 70) ** 2 + ((y - 104) / 90) ** 2 < 1
    pixels = np.where(inside, 120 + 60 * np.sin(x / 9) * np.cos(y / 7), 5).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path
