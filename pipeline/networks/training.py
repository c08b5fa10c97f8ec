"""What the two training stages share: class weights, early stopping, dvclive logging, and the cluster in TF_CONFIG."""

import atexit
import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive.keras import DVCLiveCallback
from keras.src.backend.tensorflow import trainer as keras_tf_trainer
from scmrepo.exceptions import SCMError
from sklearn.utils.class_weight import compute_class_weight

from dvclive import Live
from pipeline.core.errors import PipelineError
from pipeline.core.paths import ModelFiles

log = logging.getLogger(__name__)

KERAS_PATCHED = "3.15"  # the Keras release multi_worker_strategy's patch was written for (requirements.txt pins it)


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    """'balanced' weights n / (k * count) per class present (1 for absent classes), or None for 'none'."""
    if mode == "none":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    by_class = dict(zip(present.tolist(), weights.tolist()))
    return {index: by_class.get(index, 1.0) for index in range(n_classes)}


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


def cluster_resolver() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
    """The cluster and task TF_CONFIG names (none without it), or a PipelineError saying what is wrong with it."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        resolver.cluster_spec(), resolver.task_type, resolver.task_id
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise PipelineError(f"TF_CONFIG is not a cluster TensorFlow can read ({error}); set it to JSON like "
                            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
                            '"index": 0}}, or unset it to train on this machine alone') from None
    return resolver


def cluster_size() -> int:
    """How many training tasks (chief and workers) TF_CONFIG names: 0 without TF_CONFIG."""
    spec = cluster_resolver().cluster_spec()
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)


def is_chief() -> bool:
    """Whether this process writes the outputs: TF_CONFIG's chief, else its worker 0; alone, always."""
    resolver = cluster_resolver()
    jobs = resolver.cluster_spec().jobs
    if not jobs:
        return True
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def chief_outputs(files: ModelFiles, live_dir: Path) -> tuple[ModelFiles, Path]:
    """Where this process writes its model, meta and dvclive logs: the places asked on the chief, else a throwaway
    folder (deleted on exit), since every worker saves alike but only the chief's copy counts."""
    if is_chief():
        return files, live_dir
    scratch = Path(tempfile.mkdtemp(prefix="pipeline-worker-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    log.info("not the cluster's chief: the model, meta and dvclive logs go to the throwaway %s", scratch)
    return dataclasses.replace(files, model=scratch / files.model.name, meta=scratch / files.meta.name), scratch / "live"


def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over TF_CONFIG's cluster, with Keras' fit and evaluate made to run under it.

    Create it before anything asks TensorFlow for its devices. Keras 3's TensorFlow trainer
    (KERAS_PATCHED) fails on a cluster's first step (keras-team/keras#20585): it hands collective
    ops a whole batch to reduce before building the model, and scalar metrics to reduce along
    axis 0. Here the build takes this worker's first replica's batch (only its shapes matter),
    and metrics are averaged across replicas only, as Keras does on one machine; on any other
    Keras it stops with one line before patching anything. And the datasets
    it distributes are shared out by element: a split in fewer TFRecord files than workers
    cannot be shared out by file, TensorFlow's first choice.
    """
    refuse_unpatched_keras(keras.__version__)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    by_element = tf.data.Options()
    by_element.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    distribute = strategy.experimental_distribute_dataset
    strategy.experimental_distribute_dataset = lambda dataset, options=None: distribute(
        dataset.with_options(by_element), options)
    if not getattr(keras_tf_trainer, "_pipeline_multi_worker", False):
        keras_tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _build_from_local_batch
        keras_tf_trainer.reduce_per_replica = _reduce_across_replicas(keras_tf_trainer.reduce_per_replica)
        keras_tf_trainer._pipeline_multi_worker = True
    return strategy


def refuse_unpatched_keras(version: str) -> None:
    """A PipelineError unless `version` is the Keras release (KERAS_PATCHED) whose internals the patch replaces."""
    if version.split(".")[:2] != KERAS_PATCHED.split("."):
        raise PipelineError(f"training on a cluster patches Keras {KERAS_PATCHED}'s TensorFlow trainer "
                            f"(keras-team/keras#20585) and this is Keras {version}; install requirements.txt's keras, "
                            "or check the patch in pipeline/networks/training.py against this Keras and update it")


def _build_from_local_batch(model: keras.Model, iterator=None, data_batch=None) -> None:
    strategy = model.distribute_strategy
    if iterator is not None:
        _, _, batches = next(iter(iterator))
        data_batch = tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0], next(batches))
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)


def _reduce_across_replicas(reduce_per_replica):
    def reduce(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)
    return reduce
