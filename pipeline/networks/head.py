"""A dense classifier head trained on the cached frozen-base features."""

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.files import save_model
from pipeline.core.params import HeadParams, Params
from pipeline.networks.training import class_weights, open_live, training_callbacks
from pipeline.tables.features import load_features, read_features_meta

STEPS_PER_EXECUTION = 32  # head steps per compiled call: the head is so small that per-step overhead dominates


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


def train_head(features_dir: Path, out_path: Path, live_dir: Path, params: Params) -> dict:
    """Fit a head on features_dir's train.npz (val.npz for early stopping), save it to out_path; return a summary."""
    start = time.perf_counter()
    keras.utils.set_random_seed(params.seed)
    meta = read_features_meta(features_dir, params.data.named_classes())
    train, val = load_features(features_dir, "train"), load_features(features_dir, "val")
    n_classes = len(meta["classes"])
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
