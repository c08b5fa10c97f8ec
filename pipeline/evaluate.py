"""Stage `evaluate@<backbone>`: the fine-tuned model on the test split, per image and per subject.

Writes metrics/eval/<backbone>.json (headline metrics, per class and per subject, 95% intervals
by subject bootstrap, model size and CPU latency) and, under plots/eval/<backbone>/, one row
per test image (predictions.csv, confusion.csv) and one-vs-rest ROC curves (roc.csv).
"""

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.files import write_text
from pipeline.metrics import log_caveats, roc_curves, score_predictions
from pipeline.params import load_params
from pipeline.tfrecords import make_dataset, read_meta

MODELS_DIR = Path("models")
TFRECORDS_DIR = Path("data/tfrecords")
METRICS_DIR = Path("metrics/eval")
PLOTS_DIR = Path("plots/eval")
MODEL_NAME = "model.keras"
MODEL_META_NAME = "meta.json"
LATENCY_BATCHES = (1, 32)
WARMUP_CALLS = 3
log = logging.getLogger(__name__)


def main(params_path: Path, backbone: str) -> None:
    params = load_params(params_path)
    model_dir = MODELS_DIR / backbone
    model, meta = load_model(model_dir, backbone)
    infer = inference_function(model)
    predictions = predict(infer, TFRECORDS_DIR, params.batch_size, params.data.classes)
    report = evaluate_predictions(predictions, params.data.classes, params.evaluate.bootstrap, params.seed)
    shape = (read_meta(TFRECORDS_DIR)["image_size"],) * 2 + (3,)
    report.update(
        backbone=backbone,
        pretrained=bool(meta["pretrained"]),
        fine_tuning_kept=bool(meta["fine_tuning_kept"]),
        params=int(model.count_params()),
        trainable_params=int(sum(math.prod(weight.shape) for weight in model.trainable_weights)),
        size_mb=(model_dir / MODEL_NAME).stat().st_size / 1e6,
        latency_ms={f"batch_{n}": latency_ms(infer, (n, *shape), params.evaluate.latency_runs)
                    for n in LATENCY_BATCHES},
    )
    metrics_path = write_outputs(report, predictions, params.data.classes, METRICS_DIR, PLOTS_DIR / backbone)
    log.info("%s on %d test images of %d subjects: accuracy %.3f, balanced accuracy %.3f, macro-F1 %.3f",
             backbone, report["test_images"], report["test_subjects"], report["accuracy"],
             report["balanced_accuracy"], report["macro_f1"])
    log.info("wrote %s and %s/", metrics_path, PLOTS_DIR / backbone)


def load_model(model_dir: Path, backbone: str) -> tuple[keras.Model, dict]:
    """The fine-tuned model and its meta.json, or a PipelineError saying which stage makes them."""
    paths = model_dir / MODEL_NAME, model_dir / MODEL_META_NAME
    for path in paths:
        if not path.is_file():
            raise PipelineError(f"{path} not found; run dvc repro finetune@{backbone} first")
    meta = json.loads(paths[1].read_text())
    missing = [key for key in ("pretrained", "fine_tuning_kept") if key not in meta]
    if missing:
        raise PipelineError(f"{paths[1]}: no {' or '.join(map(repr, missing))} key; "
                            f"run dvc repro finetune@{backbone} again")
    return keras.models.load_model(paths[0], compile=False), meta


def inference_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model called in inference mode, as a traced tf.function."""
    return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


def predict(infer: Callable, tfrecord_dir: Path, batch_size: int, classes: tuple[str, ...]) -> pd.DataFrame:
    """One row per test image, in splits.csv order: path, subject, label, label_index, predicted, prob_<class>."""
    meta = read_meta(tfrecord_dir)
    if tuple(meta["classes"]) != classes:
        raise PipelineError(f"{tfrecord_dir}: classes {meta['classes']} differ from data.classes {list(classes)}; "
                            "rerun dvc repro preprocess")
    dataset = make_dataset(tfrecord_dir, "test", batch_size, with_ids=True)
    batches = [
        (infer(images).numpy(), labels.numpy(), ids)
        for images, labels, ids in tqdm(dataset, desc="evaluate test", unit="batch",
                                        total=math.ceil(meta["counts"]["test"] / batch_size))
    ]
    probabilities = np.concatenate([batch[0] for batch in batches]).astype(np.float64)
    if probabilities.shape[1] != len(classes):
        raise PipelineError(f"the model gives {probabilities.shape[1]} class probabilities for "
                            f"{len(classes)} data.classes; rerun its training stages")
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


def evaluate_predictions(predictions: pd.DataFrame, classes: tuple[str, ...], n_resamples: int, seed: int) -> dict:
    """`score_predictions` of `predict`'s table, its caveats logged."""
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy()
    scores = score_predictions(predictions["label_index"].to_numpy(), probabilities, predictions["subject"].to_numpy(),
                               classes, n_resamples, seed)
    log_caveats(scores)
    return scores


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


def write_outputs(report: dict, predictions: pd.DataFrame, classes: tuple[str, ...], metrics_dir: Path,
                  plots_dir: Path) -> Path:
    """Write the metrics JSON, predictions.csv, confusion.csv and roc.csv; return the JSON's path."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = metrics_dir / f"{report['backbone']}.json"
    write_text(metrics_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    predictions.to_csv(plots_dir / "predictions.csv", index=False)
    predictions[["label", "predicted"]].rename(columns={"label": "actual"}).to_csv(plots_dir / "confusion.csv",
                                                                                 index=False)
    labels = predictions["label_index"].to_numpy()
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy()
    roc_curves(labels, probabilities, classes).to_csv(plots_dir / "roc.csv", index=False)
    return metrics_path
