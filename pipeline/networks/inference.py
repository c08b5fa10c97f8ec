"""Trained models at work: load one, read scans the way preprocess does, predict, time it.

Imports no training code (nor dvclive): `predict`, `evaluate` and the web app use it.
"""

import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from pipeline.core.errors import PipelineError, require_file
from pipeline.imaging.reader import load_image
from pipeline.imaging.tfrecords import make_dataset, read_meta

WARMUP_CALLS = 3


def load_model(path: Path, backbone: str) -> keras.Model:
    """A fine-tuned model, uncompiled, in Keras' safe mode (no code from the file), or a PipelineError saying
    which stage makes it."""
    require_file(path, f"finetune@{backbone}")
    return keras.models.load_model(path, compile=False, safe_mode=True)


def inference_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model called in inference mode, as a traced tf.function."""
    return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


def predict_split(infer: Callable, tfrecord_dir: Path, split: str, batch_size: int,
                  classes: tuple[str, ...]) -> pd.DataFrame:
    """One row per image of `split`, in splits.csv order: path, subject, label, label_index, predicted, prob_<class>."""
    meta = read_meta(tfrecord_dir, {"classes": classes})
    dataset = make_dataset(tfrecord_dir, split, batch_size, with_ids=True)
    batches = [
        (infer(images).numpy(), labels.numpy(), ids)
        for images, labels, ids in tqdm(dataset, desc=f"predict {split}", unit="batch",
                                        total=math.ceil(meta.counts[split] / batch_size))
    ]
    probabilities = np.concatenate([batch[0] for batch in batches]).astype(np.float64)
    if probabilities.shape[1] != len(classes):
        raise PipelineError(f"the model gives {probabilities.shape[1]} class probabilities for "
                            f"{len(classes)} classes of the data; rerun its training stages")
    probabilities /= probabilities.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only roughly
    labels = np.concatenate([batch[1] for batch in batches])
    names = np.array(classes)
    frame = pd.DataFrame({
        "path": [value.decode() for batch in batches for value in batch[2]["path"].numpy()],
        "subject": [value.decode() for batch in batches for value in batch[2]["subject"].numpy()],
        "label": names[labels],
        "label_index": labels,
        "predicted": names[probabilities.argmax(axis=1)],
    })
    for index, name in enumerate(classes):
        frame[f"prob_{name}"] = probabilities[:, index]
    return frame


def latency_ms(infer: Callable, shape: tuple[int, ...], runs: int) -> float:
    """Median CPU milliseconds per image over `runs` timed calls on a batch of zeros, after warm-up."""
    with tf.device("/CPU:0"):
        images = tf.zeros(shape)
        for _ in range(WARMUP_CALLS):
            infer(images).numpy()
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            infer(images).numpy()
            seconds.append(time.perf_counter() - start)
    return 1000 * float(np.median(seconds)) / shape[0]


def model_input(scans: list[Path], size: int, channels: int = 1) -> np.ndarray:
    """Images as the models saw them in training: the project's reader, stretched to size, read with the
    training images' `channels` (meta.json), gray tiled to 3 channels."""
    for scan in scans:
        if not scan.is_file():
            raise PipelineError(f"{scan}: no such file")
    pixels = np.stack([load_image(scan, size, channels) for scan in scans]).astype(np.float32)
    return np.repeat(pixels[..., None], 3, axis=-1) if channels == 1 else pixels


def read_scans(scans: list[Path], size: int, channels: int = 1) -> tuple[np.ndarray, dict[Path, str]]:
    """model_input of the scans that read, and why each other one did not (scan -> reason)."""
    pixels, errors = [], {}
    for scan in scans:
        try:
            pixels.append(model_input([scan], size, channels))
        except PipelineError as error:
            errors[scan] = str(error).removeprefix(f"{scan}: ")
    return (np.concatenate(pixels) if pixels else np.zeros((0, size, size, 3), np.float32)), errors


def predict_scans(scans: list[Path], models: dict[str, Path], classes: tuple[str, ...],
                  channels: int = 1) -> pd.DataFrame:
    """One row per scan and backbone (`models`: backbone -> model file): scan, backbone, predicted, prob_<class>,
    error; a scan that cannot be read gets one row saying why (in `error`), and the others are predicted."""
    loaded = {backbone: load_model(path, backbone) for backbone, path in models.items()}
    frames, errors = [], {}
    for backbone, model in loaded.items():
        pixels, errors = read_scans(scans, model.input_shape[1], channels)
        readable = [scan for scan in scans if scan not in errors]
        probabilities = np.asarray(model.predict_on_batch(pixels), np.float64) if readable else np.zeros(
            (0, len(classes)))
        if probabilities.shape[1] != len(classes):
            raise PipelineError(f"{backbone}'s model gives {probabilities.shape[1]} class probabilities for "
                                f"{len(classes)} classes of the data; rerun its training stages")
        frame = pd.DataFrame({"scan": [str(scan) for scan in readable], "backbone": backbone,
                              "predicted": np.array(classes)[probabilities.argmax(axis=1)], "error": ""})
        for index, name in enumerate(classes):
            frame[f"prob_{name}"] = probabilities[:, index]
        frames.append(frame)
    frames.append(pd.DataFrame({"scan": [str(scan) for scan in errors], "backbone": "", "predicted": "",
                                "error": list(errors.values())}))
    table = pd.concat(frames, ignore_index=True)
    return table[["scan", "backbone", "predicted", *(f"prob_{name}" for name in classes), "error"]]
