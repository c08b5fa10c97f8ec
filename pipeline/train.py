"""Stage `train@<backbone>`: a dense classifier head trained on the cached frozen-base features."""

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback
from scmrepo.exceptions import SCMError
from sklearn.utils.class_weight import compute_class_weight

from pipeline.backbones import get_backbone
from pipeline.errors import PipelineError
from pipeline.features import OUT_DIR as FEATURES_DIR
from pipeline.files import save_model
from pipeline.params import HeadParams, Params, load_params

MODELS_DIR = Path("models")
LIVE_DIR = Path("dvclive/train")
HEAD_NAME = "head.keras"
STEPS_PER_EXECUTION = 32  # head steps per compiled call: the head is so small that per-step overhead dominates
log = logging.getLogger(__name__)


def main(params_path: Path, backbone_name: str) -> None:
    params = load_params(params_path)
    backbone = get_backbone(backbone_name)
    out_path = MODELS_DIR / backbone.name / HEAD_NAME
    summary = train_head(FEATURES_DIR / backbone.name, out_path, LIVE_DIR / backbone.name, params)
    log.info("%s head: %d epochs in %.0f s, %s; saved to %s", backbone.name, summary["epochs_run"],
             summary["seconds"], ", ".join(f"{k} {v:.3f}" for k, v in summary["final"].items()), out_path)


def load_features(features_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of one split's features file, or a PipelineError saying which stage makes it."""
    path = features_dir / f"{split}.npz"
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the features stage first (dvc repro features@<backbone>)")
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def read_features_meta(features_dir: Path) -> dict:
    """The meta.json the features stage wrote beside the arrays."""
    path = features_dir / "meta.json"
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the features stage first (dvc repro features@<backbone>)")
    return json.loads(path.read_text())


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    """'balanced' weights n / (k * count) per class present (1 for absent classes), or None for 'none'."""
    if mode == "none":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    by_class = dict(zip(present.tolist(), weights.tolist()))
    return {index: by_class.get(index, 1.0) for index in range(n_classes)}


def feature_batches(split: dict[str, np.ndarray], batch_size: int, class_weight: dict[int, float] | None = None,
                    seed: int | None = None) -> tf.data.Dataset:
    """Batches of a split's cached (features, labels[, class weight per sample]), reshuffled each epoch given a seed.

    A dataset in memory rather than arrays handed to fit: Keras' own array adapter and class
    weighting cost more per step than the head's arithmetic.
    """
    columns = (split["features"], split["labels"])
    if class_weight:
        columns += (np.array([class_weight[label] for label in split["labels"].tolist()], np.float32),)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if seed is not None:
        dataset = dataset.shuffle(max(1, len(split["labels"])), seed=seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def build_head(train_features: np.ndarray, n_classes: int, params: HeadParams) -> keras.Sequential:
    """Normalization (adapted on the train features), [Dense relu L2, Dropout] per unit count, softmax."""
    normalize = keras.layers.Normalization(name="normalize")
    normalize.adapt(train_features)
    layers = [keras.Input((train_features.shape[1],), name="features"), normalize]
    for index, units in enumerate(params.units):
        layers += [keras.layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.L2(params.l2),
                                      name=f"dense_{index}"),
                   keras.layers.Dropout(params.dropout, name=f"dropout_{index}")]
    layers.append(keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities"))
    return keras.Sequential(layers, name="head")


def compile_head(head: keras.Model, lr: float) -> None:
    """Adam at lr, sparse cross-entropy, accuracy; several steps per compiled call."""
    head.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 steps_per_execution=STEPS_PER_EXECUTION)


def training_callbacks(patience: int, has_val: bool, live: Live) -> list[keras.callbacks.Callback]:
    """Early stopping on val_loss (loss without a val split), restoring the best weights, and dvclive logging."""
    monitor = "val_loss" if has_val else "loss"
    if not has_val:
        log.warning("the val split is empty: early stopping watches the training loss instead")
    return [keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
            DVCLiveCallback(live=live)]


def open_live(live_dir: Path) -> Live:
    """A dvclive logger writing under live_dir, with no dvc.yaml of its own and no experiment saved."""
    try:
        return Live(str(live_dir), dvcyaml=None, save_dvc_exp=False)
    except SCMError as error:
        raise PipelineError(f"dvclive needs a git repository with at least one commit ({error}); "
                            "commit once (git add -A && git commit) and run again") from None


def train_head(features_dir: Path, out_path: Path, live_dir: Path, params: Params) -> dict:
    """Fit a head on features_dir's train.npz (val.npz for early stopping), save it to out_path; return a summary."""
    start = time.perf_counter()
    keras.utils.set_random_seed(params.seed)
    meta = read_features_meta(features_dir)
    train, val = load_features(features_dir, "train"), load_features(features_dir, "val")
    n_classes = len(params.data.classes)
    head = build_head(train["features"], n_classes, params.head)
    compile_head(head, params.lr)
    has_val = len(val["labels"]) > 0
    live = open_live(live_dir)
    live.log_params({"backbone": meta["backbone"], "weights": meta["weights"], "pretrained": meta["pretrained"]})
    weights = class_weights(train["labels"], n_classes, params.head.class_weight)
    history = head.fit(feature_batches(train, params.batch_size, weights, seed=params.seed), epochs=params.epochs,
                       validation_data=feature_batches(val, params.batch_size) if has_val else None,
                       callbacks=training_callbacks(params.head.patience, has_val, live), verbose=2,
                       shuffle=False)  # the dataset reshuffles itself each epoch
    save_model(head, out_path)
    summary = {"epochs_run": len(history.history["loss"]), "seconds": round(time.perf_counter() - start, 1),
               "pretrained": meta["pretrained"],
               "final": {name: float(values[-1]) for name, values in history.history.items()}}
    live.summary.update({key: summary[key] for key in ("epochs_run", "seconds", "pretrained")})
    live.make_summary()
    return summary
