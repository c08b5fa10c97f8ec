"""Cached features, the head, augmentation and fine-tuning on tiny TFRecords (MobileNetV3Small, 32 px, random init)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from pipeline.core.params import parse_params
from pipeline.core.paths import ModelFiles
from pipeline.core.registry import get_backbone
from pipeline.imaging.tfrecords import make_dataset, write_tfrecords
from pipeline.networks import finetune as finetune_stage
from pipeline.networks.backbones import base_of
from pipeline.networks.features import write_features
from pipeline.networks.finetune import fine_tune, keep_fine_tuning, steps_per_epoch, unfreeze_top, use_mixed_precision
from pipeline.networks.head import build_head, feature_batches, train_head
from pipeline.networks.training import class_weights
from pipeline.networks.weights import stage_weights
from pipeline.tables.features import load_features
from pipeline.tables.split import SplitRow as Row
from tests.conftest import ROOT, raw_params

BACKBONE = "MobileNetV3Small"
CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
SIZE = 32


def tiny_params(**changes):
    """The committed params, shrunk to seconds of work at 32 px with random weights."""
    raw = raw_params(image_size=SIZE, batch_size=8, epochs=3, fine_tune_epochs=1, weights="none",
                     head={"units": [8], "dropout": 0.0}, augment={"views": 1},
                     finetune={"max_train_images": 16, "mixed_precision": "off"})
    raw.update(changes)
    return parse_params(raw)


def write_scans(root: Path, out_dir: Path, splits: dict[str, int]) -> Path:
    """TFRecords of random smooth 40x40 scans, `splits[name]` per split, labels cycling through the classes."""
    rng = np.random.default_rng(0)
    rows = []
    for split, count in splits.items():
        for number in range(count):
            label = CLASSES[number % len(CLASSES)]
            path = f"{label}/{split}{number}.png"
            (root / label).mkdir(parents=True, exist_ok=True)
            blob = rng.uniform(0, 255, (5, 5)).astype(np.uint8)
            Image.fromarray(blob).resize((40, 40), Image.Resampling.BILINEAR).save(root / path)
            rows.append(Row(path, label, split, f"{split}-s{number // 2}", path, "original"))
    write_tfrecords(rows, root, out_dir, CLASSES, 1, SIZE, "png", shard_size=8)
    return out_dir


def no_weights(folder: Path) -> Path:
    """The weights stage's folder for `weights: none` (random weights), under `folder`."""
    stage_weights(get_backbone(BACKBONE), "none", 32, folder / "weights")
    return folder / "weights"


@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("scans")
    return write_scans(tmp / "archive", tmp / "tfrecords", {"train": 20, "val": 8, "test": 8})


@pytest.fixture(scope="module")
def trained(tfrecords, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Features and a trained head: (features dir, model dir, dvclive dir)."""
    tmp = tmp_path_factory.mktemp("trained")
    write_features(tfrecords, no_weights(tmp), tmp / "features", BACKBONE, tiny_params())
    train_head(tmp / "features", tmp / "models" / "head.keras", tmp / "live", tiny_params())
    return tmp / "features", tmp / "models", tmp / "live"


def test_features_hold_every_image_once_plus_augmented_views(tfrecords, trained):
    features_dir = trained[0]
    train = load_features(features_dir, "train")
    images, labels = zip(*make_dataset(tfrecords, "train", 100).as_numpy_iterator())
    assert train["features"].shape == (40, 576) and train["features"].dtype == np.float32
    assert train["view"].tolist() == [0] * 20 + [1] * 20
    assert train["labels"].tolist() == labels[0].tolist() * 2
    assert train["paths"][:20].tolist() == train["paths"][20:].tolist() and train["paths"][0] == "NonDemented/train0.png"
    assert train["subjects"][2] == "train-s1"
    scale = np.abs(train["features"]).max()  # tiny with random weights (about 1e-11), so compare relatively
    assert np.abs(train["features"][:20] - train["features"][20:]).max() > 0.01 * scale  # the views are augmented
    for split in ("val", "test"):
        arrays = load_features(features_dir, split)
        assert arrays["features"].shape == (8, 576) and set(arrays["view"]) == {0}
    meta = json.loads((features_dir / "meta.json").read_text())
    assert meta["counts"] == {"train": 40, "val": 8, "test": 8} and meta["pretrained"] is False and meta["dim"] == 576


def test_features_written_twice_are_the_same_bytes(tfrecords, tmp_path):
    """train depends on the whole folder, so nothing that differs between runs (the time taken) may sit in it."""
    contents = []
    for run in ("first", "second"):
        keras.backend.clear_session()  # as in a fresh process: layer names, and so the weights file, start over
        write_features(tfrecords, no_weights(tmp_path), tmp_path / run, BACKBONE, tiny_params())
        contents.append({path.name: path.read_bytes() for path in (tmp_path / run).iterdir()})
    assert sorted(contents[0]) == ["base.weights.h5", "meta.json", "test.npz", "train.npz", "val.npz"]
    assert contents[0] == contents[1]


def test_augmented_views_do_not_depend_on_the_inference_batch(tfrecords, tmp_path):
    """Each image's view comes from (seed + view, its position): a GPU's batch of 256 sees the views a CPU's 32 does."""
    def train_features(batch_size: int) -> np.ndarray:
        keras.backend.clear_session()
        params = tiny_params()
        params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"batch_size": batch_size})})
        write_features(tfrecords, no_weights(tmp_path), tmp_path / str(batch_size), BACKBONE, params)
        return load_features(tmp_path / str(batch_size), "train")["features"]

    by_3, by_32 = train_features(3), train_features(32)
    scale = np.abs(by_32).max()  # tiny with random weights, so compare relatively
    assert np.abs(by_32[20:] - by_32[:20]).max() > 0.01 * scale  # view 1 is augmented
    np.testing.assert_allclose(by_3, by_32, rtol=0, atol=1e-4 * scale)  # the same views, to float error


def test_class_weights_are_balanced_over_present_classes():
    weights = class_weights(np.array([0, 0, 0, 1]), 3, "balanced")
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0, 2: 1.0})
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_head_trains_with_finite_val_loss_and_logs_each_epoch(trained):
    _, model_dir, live_dir = trained
    head = keras.models.load_model(model_dir / "head.keras")
    assert [type(layer).__name__ for layer in head.layers] == ["Normalization", "Dense", "Dropout", "Dense"]
    assert head.output_shape == (None, 4)
    losses = (live_dir / "plots" / "metrics" / "eval" / "loss.tsv").read_text().splitlines()[1:]
    assert len(losses) == 3 and all(np.isfinite(float(line.split("\t")[-1])) for line in losses)
    summary = json.loads((live_dir / "metrics.json").read_text())
    assert summary["epochs_run"] == 3 and summary["pretrained"] is False


def test_head_normalizes_with_train_statistics():
    features = np.random.default_rng(0).normal(5.0, 3.0, (200, 6)).astype(np.float32)
    head = build_head(features, 4, tiny_params().head)
    normalized = np.asarray(head.get_layer("normalize")(features))
    np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=0), 1, atol=1e-3)


def test_empty_val_split_falls_back_to_the_training_loss(tmp_path, caplog):
    tfrecords = write_scans(tmp_path / "archive", tmp_path / "tfrecords", {"train": 8, "val": 0, "test": 4})
    params = tiny_params(epochs=2)
    write_features(tfrecords, no_weights(tmp_path), tmp_path / "features", BACKBONE, params)
    assert load_features(tmp_path / "features", "val")["features"].shape == (0, 576)
    summary = train_head(tmp_path / "features", tmp_path / "head.keras", tmp_path / "live", params)
    assert summary["epochs_run"] == 2 and "val_loss" not in summary["final"]
    assert "val split is empty" in caplog.text


def test_steps_per_epoch_and_mixed_precision_switch():
    assert steps_per_epoch(100, 0, 32) == 4 and steps_per_epoch(100, 40, 32) == 2 and steps_per_epoch(10, 512, 32) == 1
    assert use_mixed_precision("on") and not use_mixed_precision("off")


@pytest.mark.parametrize("devices", [[], ["/device:GPU:0"], ["/device:GPU:0", "/device:GPU:1"]], ids=len)
def test_auto_mixed_precision_follows_the_visible_gpus(monkeypatch, devices):
    """`auto` asks TensorFlow for GPUs: on with one or more, off with none, whatever this machine has."""
    asked = []

    def list_logical_devices(kind=None):
        asked.append(kind)
        return [tf.config.LogicalDevice(name, "GPU") for name in devices] if kind == "GPU" else []

    monkeypatch.setattr(tf.config, "list_logical_devices", list_logical_devices)
    assert use_mixed_precision("auto") is bool(devices) and "GPU" in asked
    assert use_mixed_precision("on") and not use_mixed_precision("off")


def fake_devices(monkeypatch, gpus: int, cpus: int = 1) -> None:
    """Make TensorFlow list `gpus` logical GPUs and `cpus` logical CPUs, whatever this machine has."""
    names = {"GPU": [f"/device:GPU:{i}" for i in range(gpus)], "CPU": [f"/device:CPU:{i}" for i in range(cpus)]}
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: [tf.config.LogicalDevice(name, kind) for name in names[kind]])


@pytest.mark.parametrize(("gpus", "cpus", "mirrored_over"), [
    (0, 1, None), (1, 1, None), (1, 2, None),
    (0, 2, ["/device:CPU:0", "/device:CPU:1"]),
    (2, 1, ["/device:GPU:0", "/device:GPU:1"]), (2, 2, ["/device:GPU:0", "/device:GPU:1"]),
], ids=["cpu", "gpu", "gpu-and-2-cpus", "2-cpus", "2-gpus", "2-gpus-and-2-cpus"])
def test_strategy_mirrors_over_the_gpus_else_the_cpus_when_there_are_several(monkeypatch, gpus, cpus, mirrored_over):
    """One GPU trains alone, even beside several CPUs; several GPUs are mirrored, and CPUs only when there is no GPU."""
    monkeypatch.delenv("TF_CONFIG", raising=False)  # one machine
    fake_devices(monkeypatch, gpus, cpus)
    made = []
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda devices: made.append(devices) or "mirrored")
    strategy = finetune_stage.pick_strategy()
    if mirrored_over:
        assert strategy == "mirrored" and made == [mirrored_over]
    else:
        assert strategy is tf.distribute.get_strategy() and made == []


def test_unfreeze_top_leaves_batch_norm_frozen():
    keras.utils.set_random_seed(0)
    base = get_backbone(BACKBONE).constructor(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                              pooling="avg", include_preprocessing=True)
    count = unfreeze_top(base, 0.5)
    top = base.layers[len(base.layers) - count:]
    assert count == round(0.5 * len(base.layers))
    assert all(not layer.trainable for layer in base.layers[:-count])
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top)


def test_fine_tune_saves_a_model_that_round_trips(tfrecords, trained, tmp_path):
    features_dir, model_dir, _ = trained
    shutil.copytree(model_dir, tmp_path / "models")
    meta = fine_tune(tfrecords, features_dir, ModelFiles.in_dir(tmp_path / "models"), tmp_path / "live",
                     get_backbone(BACKBONE), tiny_params())
    assert meta["epochs_run"] == 1 and meta["replicas"] == 1 and meta["pretrained"] is False
    assert 0 < meta["trainable_params"] < meta["total_params"]
    path = tmp_path / "models" / "model.keras"
    model = keras.models.load_model(path)  # no custom objects, safe mode
    base = base_of(model)
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert any(layer.trainable for layer in base.layers)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]
    node = next(layer for layer in config["layers"] if layer["name"] == base.name)["inbound_nodes"][0]
    assert node["kwargs"]["training"] is False
    images = next(iter(make_dataset(tfrecords, "test", 8)))[0].numpy()
    probabilities = model.predict_on_batch(images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model(images, training=True)), probabilities, rtol=1e-4, atol=1e-6)
    logged = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "eval" / "loss.tsv", sep="\t")["loss"]
    assert len(logged) == meta["epochs_run"] and np.isfinite(logged).all()


def test_training_twice_with_one_seed_logs_the_same_losses_and_writes_the_same_files(tfrecords, trained, tmp_path):
    """Same params and seed, same run: the head's dropout and the augmented stream are seeded.

    And the same bytes, so that DVC does not rerun the stages after one whose rerun changed nothing.
    """
    features_dir, _, _ = trained
    params = tiny_params().model_copy(update={"head": tiny_params().head.model_copy(update={"dropout": 0.5})})
    losses, files = [], []
    for state, run in enumerate(("first", "second")):
        keras.backend.clear_session()  # as in a fresh process: layer names, and so the saved config, start over
        train_head(features_dir, tmp_path / run / "head.keras", tmp_path / run / "live-head", params)
        keras.utils.set_random_seed(state)  # fine_tune runs in a fresh process: any random state before it
        fine_tune(tfrecords, features_dir, ModelFiles.in_dir(tmp_path / run), tmp_path / run / "live",
                  get_backbone(BACKBONE), params)
        logged = tmp_path / run / "live" / "plots" / "metrics" / "train" / "loss.tsv"
        losses.append(pd.read_csv(logged, sep="\t")["loss"])
        files.append({name: (tmp_path / run / name).read_bytes() for name in ("head.keras", "model.keras", "meta.json")})
    assert losses[0].tolist() == losses[1].tolist()
    assert files[0] == files[1]


@pytest.mark.parametrize("changes", [{"fine_tune_epochs": 0}, {"fine_tune_lr": 1.0}], ids=["no-epochs", "diverged"])
def test_unkept_fine_tuning_leaves_the_head_on_the_frozen_base(tfrecords, trained, tmp_path, changes):
    features_dir, model_dir, _ = trained
    shutil.copytree(model_dir, tmp_path / "models")
    meta = fine_tune(tfrecords, features_dir, ModelFiles.in_dir(tmp_path / "models"), tmp_path / "live",
                     get_backbone(BACKBONE), tiny_params(**changes))
    assert meta["fine_tuning_kept"] is False and meta["val_loss"] == meta["start_val_loss"] > 0
    model = keras.models.load_model(tmp_path / "models" / "model.keras")
    head = keras.models.load_model(model_dir / "head.keras")
    images = next(iter(make_dataset(tfrecords, "val", 8)))[0].numpy()
    expected = head.predict_on_batch(load_features(features_dir, "val")["features"])
    np.testing.assert_allclose(model.predict_on_batch(images), expected, rtol=1e-4, atol=1e-5)


def test_feature_batches_weight_each_sample_by_its_class_and_reshuffle_each_epoch():
    split = {"features": np.arange(12, dtype=np.float32).reshape(6, 2), "labels": np.array([0, 0, 0, 0, 1, 1])}
    weights = class_weights(split["labels"], 2, "balanced")
    dataset = feature_batches(split, 4, weights, seed=0)
    epochs = [[np.concatenate(column) for column in zip(*[[t.numpy() for t in batch] for batch in dataset])]
              for _ in range(2)]
    for features, labels, sample_weights in epochs:
        assert sorted(features[:, 0].tolist()) == split["features"][:, 0].tolist()
        np.testing.assert_array_equal(labels, features[:, 0] // 2 >= 4)  # each row keeps its label
        np.testing.assert_allclose(sample_weights, [weights[label] for label in labels])
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    plain = [batch for batch in feature_batches(split, 4)]
    assert len(plain[0]) == 2 and np.array_equal(plain[0][0].numpy(), split["features"][:4])


def test_keep_fine_tuning_restores_the_start_only_when_no_epoch_beat_it():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    start = model.get_weights()
    tuned = [weight + 1 for weight in start]
    model.set_weights(tuned)
    assert keep_fine_tuning(model, start, 1.0, [1.2, 0.9])
    assert all(np.array_equal(now, then) for now, then in zip(model.get_weights(), tuned))
    assert keep_fine_tuning(model, start, None, [])  # no val split: nothing to compare with
    assert not keep_fine_tuning(model, start, 1.0, [1.2, 1.0])
    assert all(np.array_equal(now, then) for now, then in zip(model.get_weights(), start))


MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from pipeline.core.registry import get_backbone
from pipeline.core.paths import ModelFiles
from pipeline.networks.finetune import fine_tune
from tests.test_train import tiny_params
meta = fine_tune(Path(sys.argv[1]), Path(sys.argv[2]), ModelFiles.in_dir(Path(sys.argv[3])), Path(sys.argv[4]),
                 get_backbone("MobileNetV3Small"), tiny_params())
print("replicas", meta["replicas"], "epochs", meta["epochs_run"])
"""


def test_fine_tune_mirrors_over_two_devices(tfrecords, trained, tmp_path):
    features_dir, model_dir, _ = trained
    shutil.copytree(model_dir, tmp_path / "models")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(tfrecords), str(features_dir), str(tmp_path / "models"),
                             str(tmp_path / "live")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2 epochs 1" in result.stdout
    images = next(iter(make_dataset(tfrecords, "test", 8)))[0].numpy()
    probabilities = keras.models.load_model(tmp_path / "models" / "model.keras").predict_on_batch(images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("switch, gpus", [({"mixed_precision": raw_params()["finetune"]["mixed_precision"]}, 1),
                                          ({"xla": True}, 0)], ids=["committed-params-on-a-gpu", "xla"])
def test_fine_tune_fits_under_mixed_precision_and_under_xla(tfrecords, trained, tmp_path, monkeypatch, switch, gpus):
    """One tiny `fit` with the switch on (on the CPU here): the model it saves computes as asked and predicts.
    params.yaml's `mixed_precision` needs no change on a GPU: with one (faked) GPU in view, it is float16."""
    fake_devices(monkeypatch, gpus=gpus)
    features_dir, model_dir, _ = trained
    shutil.copytree(model_dir, tmp_path / "models")
    saved, save_model = [], finetune_stage.save_model

    def keep_and_save(model, path):
        saved.append(model)
        save_model(model, path)

    monkeypatch.setattr(finetune_stage, "save_model", keep_and_save)
    params = tiny_params()
    params = params.model_copy(update={"finetune": params.finetune.model_copy(update=switch)})
    try:
        meta = fine_tune(tfrecords, features_dir, ModelFiles.in_dir(tmp_path / "models"), tmp_path / "live",
                         get_backbone(BACKBONE), params)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed, xla = gpus > 0, switch.get("xla", False)
    assert (meta["mixed_precision"], meta["xla"], meta["epochs_run"], meta["replicas"]) == (mixed, xla, 1, 1)
    model = saved[0]
    assert model.jit_compile is xla
    compute = {layer.dtype_policy.compute_dtype for layer in base_of(model).layers if layer.weights}
    assert compute == ({"float16"} if mixed else {"float32"})
    losses = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")["loss"]
    assert len(losses) == 1 and np.isfinite(losses).all()
    images = next(iter(make_dataset(tfrecords, "test", 8)))[0].numpy()
    probabilities = np.asarray(keras.models.load_model(tmp_path / "models" / "model.keras").predict_on_batch(images))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-3)
