"""Base and trained head as one model, the top of the base unfrozen, fine-tuned on augmented scans."""

import logging
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.errors import require_file
from pipeline.core.files import save_model, write_json
from pipeline.core.params import Params
from pipeline.core.paths import ModelFiles
from pipeline.core.registry import Backbone, describe, is_pretrained
from pipeline.imaging.augment import augment_dataset
from pipeline.imaging.tfrecords import make_dataset, read_meta
from pipeline.networks.backbones import base_of, build_model
from pipeline.networks.training import (
    chief_outputs,
    class_weights,
    cluster_size,
    multi_worker_strategy,
    open_live,
    training_callbacks,
)
from pipeline.tables.features import base_weights_file, read_features_meta

log = logging.getLogger(__name__)


def use_mixed_precision(setting: str) -> bool:
    """'on', 'off', or 'auto': on only when a GPU is visible."""
    return setting == "on" or (setting == "auto" and bool(tf.config.list_logical_devices("GPU")))


def pick_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names more than one worker; else MirroredStrategy over the GPUs
    (else the CPUs) when more than one is visible; else the default strategy. Call it before TensorFlow lists devices.
    """
    if cluster_size() > 1:
        return multi_worker_strategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def unfreeze_top(base: keras.Model, share: float) -> int:
    """Make the top `share` of the base's layers trainable, every BatchNormalization frozen; return how many."""
    count = round(share * len(base.layers))
    base.trainable = True
    for index, layer in enumerate(base.layers):
        top = index >= len(base.layers) - count
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
    return count


def train_stream(tfrecord_dir: Path, params: Params) -> tf.data.Dataset:
    """Endless shuffled train batches, augmented on the stream (not in the model), in parallel."""
    dataset = make_dataset(tfrecord_dir, "train", params.batch_size, shuffle=True, seed=params.seed, channels=None,
                           repeat=True)
    return augment_dataset(dataset, params.augment, params.seed)


def steps_per_epoch(train_count: int, max_train_images: int, batch_size: int) -> int:
    """Batches per epoch: the train split, capped at max_train_images when that is not 0."""
    images = min(train_count, max_train_images) if max_train_images else train_count
    return max(1, math.ceil(images / batch_size))


def load_head(path: Path) -> keras.Model:
    """The head the train stage saved, or a PipelineError saying how to make it."""
    require_file(path, f"train@{path.parent.name}")
    return keras.models.load_model(path)


def build_fine_tune_model(backbone: Backbone, params: Params, head: keras.Model,
                          base_weights: Path) -> tuple[keras.Model, int]:
    """The base from `base_weights` under the trained head, the base's top unfrozen, compiled; and the layers unfrozen."""
    require_file(base_weights, f"features@{backbone.name}")
    model = build_model(backbone, str(base_weights), params.image_size, head)
    share = backbone.unfreeze if params.finetune.unfreeze == -1 else params.finetune.unfreeze
    unfrozen = unfreeze_top(base_of(model), share)
    model.compile(optimizer=keras.optimizers.Adam(params.fine_tune_lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=params.finetune.xla)
    return model, unfrozen


def keep_fine_tuning(model: keras.Model, start_weights: list, start_val_loss: float | None,
                     val_losses: list[float]) -> bool:
    """Whether the best epoch beat the val loss fine-tuning started from; if not, put the starting weights back.

    Early stopping keeps the best epoch, but only among the epochs run: on small data (or from
    random weights) every epoch can be worse than the trained head it started from.
    """
    if start_val_loss is None or min(val_losses) < start_val_loss:
        return True
    model.set_weights(start_weights)
    log.warning("fine-tuning never lowered the val loss below the %.4f it started from (best epoch %.4f): "
                "keeping the base and head as they were before it", start_val_loss, min(val_losses))
    return False


def fine_tune(tfrecord_dir: Path, features_dir: Path, files: ModelFiles, live_dir: Path, backbone: Backbone,
              params: Params) -> dict:
    """Fine-tune the features stage's base under the trained head; save model.keras and meta.json.

    On a cluster (TF_CONFIG) only the chief writes them and the dvclive logs. Returns the meta,
    the seconds it took and where the model went.
    """
    start = time.perf_counter()
    strategy = pick_strategy()  # first: a cluster's strategy must come before TensorFlow lists its devices
    files, live_dir = chief_outputs(files, live_dir)
    keras.utils.set_random_seed(params.seed)  # before the head loads: its dropout layers draw their seeds then
    mixed = use_mixed_precision(params.finetune.mixed_precision)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    data_meta = read_meta(tfrecord_dir, {"image_size": params.image_size, **params.data.named_classes()})
    read_features_meta(features_dir, {"weights": params.weights, "image_size": params.image_size,
                                      "classes": data_meta.classes})
    counts, class_counts = data_meta.counts, data_meta.class_counts["train"]
    with strategy.scope():
        head = load_head(files.head)
        model, unfrozen = build_fine_tune_model(backbone, params, head, base_weights_file(features_dir))
    classes = data_meta.classes
    labels = np.repeat(np.arange(len(classes)), [class_counts[name] for name in classes])
    has_val = counts["val"] > 0
    live = open_live(live_dir)
    live.log_params({"backbone": backbone.name, "weights": params.weights, "pretrained": is_pretrained(params.weights)})
    val = make_dataset(tfrecord_dir, "val", params.batch_size) if has_val else None
    start_val_loss = model.evaluate(val, verbose=0, return_dict=True)["loss"] if has_val else None
    epochs_run, kept, val_loss = 0, False, start_val_loss
    if params.fine_tune_epochs:
        start_weights = model.get_weights()
        history = model.fit(
            train_stream(tfrecord_dir, params), epochs=params.fine_tune_epochs,
            steps_per_epoch=steps_per_epoch(counts["train"], params.finetune.max_train_images, params.batch_size),
            validation_data=val,
            class_weight=class_weights(labels, len(classes), params.head.class_weight),
            callbacks=training_callbacks(params.finetune.patience, has_val, live), verbose=2,
            shuffle=False)  # the stream is shuffled already
        epochs_run = len(history.history["loss"])
        val_losses = history.history.get("val_loss", [])
        kept = keep_fine_tuning(model, start_weights, start_val_loss, val_losses)
        val_loss = min(val_losses) if kept and val_losses else val_loss
    save_model(model, files.model)
    meta = {
        **describe(backbone, params.weights, params.image_size),
        "classes": classes,  # what the model's outputs are, for evaluate to check against the TFRecords
        "unfrozen_layers": unfrozen,
        "trainable_params": int(sum(np.prod(weight.shape) for weight in model.trainable_weights)),
        "total_params": int(model.count_params()),
        "epochs_run": epochs_run,
        "start_val_loss": start_val_loss,
        "val_loss": val_loss,
        "fine_tuning_kept": kept,
        "mixed_precision": mixed,
        "xla": params.finetune.xla,
        "replicas": strategy.num_replicas_in_sync,
    }
    write_json(files.meta, meta)
    seconds = round(time.perf_counter() - start, 1)  # logged, not in meta.json: evaluate depends on that file
    live.summary.update({key: meta[key] for key in ("epochs_run", "pretrained", "trainable_params",
                                                    "fine_tuning_kept", "val_loss")}, seconds=seconds)
    live.make_summary()
    return {**meta, "seconds": seconds, "saved_to": files.model}
