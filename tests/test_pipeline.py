"""`dvc repro` end to end on a tiny demo, in a temporary copy of the project."""

import hashlib
import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    log_loss,
)

from pipeline.core.registry import get_backbone
from pipeline.networks.backbones import build_base
from tests.conftest import (
    BACKBONES,
    copy_project,
    edit_params,
    ran_stages,
    run,
    write_params,
)


@pytest.fixture(scope="module")
def project(built_project, module_tmp) -> Path:
    return copy_project(built_project, module_tmp)


def test_repro_writes_every_output(project):
    meta = json.loads((project / "data/tfrecords/meta.json").read_text())
    splits = pd.read_csv(project / "data/splits.csv")
    assert meta["image_size"] == 32 and meta["counts"] == splits["split"].value_counts().to_dict()
    for split, names in meta["shards"].items():
        records = tf.data.TFRecordDataset([str(project / "data/tfrecords" / name) for name in names])
        assert sum(1 for _ in records) == meta["counts"][split], split
    index = pd.read_csv(project / "data/interim/index.csv")
    truth = pd.read_csv(project / "data/raw/demo-truth.csv")
    assert sorted(index["path"]) == sorted(truth["path"])
    assert set(splits["split"]) == {"train", "val", "test"}


def test_repro_reports_the_judged_figures(project):
    dedupe = json.loads((project / "metrics/dedupe.json").read_text())
    split = json.loads((project / "metrics/split.json").read_text())
    assert dedupe["truth"]["copy_subject_accuracy"] >= 0.995
    assert dedupe["truth"]["copy_source_accuracy"] >= 0.97
    assert dedupe["truth"]["orphan_rate"] <= 0.02
    assert split["shared_subjects"] == split["shared_sources"] == 0
    assert split["truth"]["true_subjects_in_several_splits"] == 0


@pytest.mark.parametrize("backbone", BACKBONES)
def test_repro_trains_and_evaluates_every_backbone(project, backbone):
    splits = pd.read_csv(project / "data/splits.csv")
    for split in ("train", "val", "test"):
        cached = np.load(project / f"data/features/{backbone}/{split}.npz")
        originals = cached["paths"][cached["view"] == 0]
        assert sorted(originals) == sorted(splits.loc[splits["split"] == split, "path"]), split
        assert len(cached["features"]) == len(cached["paths"]) and np.isfinite(cached["features"]).all()
    for name in ("head.keras", "model.keras"):
        with zipfile.ZipFile(project / f"models/{backbone}/{name}") as archive:
            assert archive.testzip() is None and "model.weights.h5" in archive.namelist(), name
    for stage in ("train", "finetune"):
        assert "loss" in json.loads((project / f"dvclive/{stage}/{backbone}/metrics.json").read_text())["train"]
    report = json.loads((project / f"metrics/eval/{backbone}.json").read_text())
    assert report["pretrained"] is False
    predictions = pd.read_csv(project / f"plots/eval/{backbone}/predictions.csv")
    test = pd.read_csv(project / "data/splits.csv").query("split == 'test'")
    assert sorted(predictions["path"]) == sorted(test["path"]) and len(test) == report["test_images"] > 0
    truth = test.set_index("path").loc[predictions["path"]]
    assert list(predictions["label"]) == list(truth["label"])
    assert list(predictions["subject"]) == list(truth["subject"])
    classes = report["classes"]
    assert list(predictions["label_index"]) == [classes.index(label) for label in predictions["label"]]
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy()
    predicted = probabilities.argmax(axis=1)
    assert list(predictions["predicted"]) == [classes[index] for index in predicted]
    labels, everything = predictions["label_index"].to_numpy(), list(range(len(classes)))
    assert report["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(labels, predicted, labels=everything, average="macro",
                                                        zero_division=np.nan))
    assert report["qwk"] == pytest.approx(cohen_kappa_score(labels, predicted, labels=everything, weights="quadratic"))
    assert report["log_loss"] == pytest.approx(log_loss(labels, probabilities, labels=everything), rel=1e-5)


def test_experiment_on_lr_reruns_only_training_stages(project):
    output = run(["dvc", "exp", "run", "-S", "lr=0.0005"], project)
    ran = {stage.split("@")[0] for stage in ran_stages(output)}
    assert ran == {"train", "finetune", "evaluate", "explain", "compare"}, output
    diff = run(["dvc", "metrics", "diff", "--all"], project)
    assert all(f"metrics/eval/{backbone}.json" in diff for backbone in BACKBONES), diff
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "--force"], project)


def test_second_repro_runs_nothing(project):
    output = run(["dvc", "repro"], project)
    assert "Running stage" not in output


def test_training_rerun_writes_the_same_models_and_reruns_no_evaluation(project):
    backbone = BACKBONES[0]
    paths = [project / f"models/{backbone}/{name}" for name in ("head.keras", "model.keras", "meta.json")]
    before = [path.read_bytes() for path in paths]
    run(["dvc", "repro", "--force", "--single-item", f"train@{backbone}", f"finetune@{backbone}"], project)
    assert [path.read_bytes() for path in paths] == before
    output = run(["dvc", "repro"], project)
    assert set(ran_stages(output)) <= {"compare"}, output  # it shows the seconds taken, which may differ


def test_rerun_is_byte_identical_and_a_new_seed_changes_the_split(project):
    index, splits = (project / "data/interim/index.csv").read_bytes(), (project / "data/splits.csv").read_bytes()
    run(["dvc", "repro", "--force", "--single-item", "dedupe"], project)
    run(["dvc", "repro", "--force", "--single-item", "split"], project)
    assert (project / "data/interim/index.csv").read_bytes() == index
    assert (project / "data/splits.csv").read_bytes() == splits
    write_params(project, seed=7)
    output = run(["dvc", "repro", "split"], project)
    assert "Running stage 'split'" in output and "Running stage 'dedupe'" not in output
    assert (project / "data/splits.csv").read_bytes() != splits


def test_params_set_back_restore_training_from_the_run_cache(built_project, tmp_path):
    """README: a run is never paid for twice. lr changed and trained, then set back: train and finetune come back
    from the run-cache ("is cached - skipping run"), not trained again, as the same bytes."""
    project = copy_project(built_project, tmp_path)
    backbone = BACKBONES[0]
    stages = [f"train@{backbone}", f"finetune@{backbone}"]
    files = [project / f"models/{backbone}/{name}" for name in ("head.keras", "model.keras", "meta.json")]
    before = [path.read_bytes() for path in files]
    lr = yaml.safe_load((project / "params.yaml").read_text())["lr"]
    edit_params(project, lr=lr / 2)
    assert ran_stages(run(["dvc", "repro", stages[1]], project)) == stages
    assert files[0].read_bytes() != before[0]
    edit_params(project, lr=lr)
    output = run(["dvc", "repro", stages[1]], project)
    assert ran_stages(output) == [], output
    assert all(f"Stage '{stage}' is cached - skipping run, checking out outputs" in output for stage in stages), output
    assert [path.read_bytes() for path in files] == before


def test_a_weights_file_changed_under_its_name_reruns_weights_and_features(built_project, tmp_path):
    """README: a file of one's own in pretrained/ is a dependency; new bytes under the same name rerun the
    weights and features stages, a touch with the same bytes reruns nothing."""
    project = copy_project(built_project, tmp_path)
    backbone = BACKBONES[0]
    stages = [f"weights@{backbone}", f"features@{backbone}"]
    file = project / "pretrained/base.weights.h5"

    def save_weights(seed: int) -> None:  # random weights, where a user's file holds trained ones
        keras.utils.set_random_seed(seed)
        build_base(get_backbone(backbone), "none", 32).save_weights(file)

    save_weights(1)
    edit_params(project, weights="pretrained/base.weights.h5")
    assert ran_stages(run(["dvc", "repro", stages[1]], project)) == stages
    staged = json.loads((project / f"data/weights/{backbone}/source.json").read_text())["sha256"]
    os.utime(file)
    assert ran_stages(run(["dvc", "repro", stages[1]], project)) == []
    save_weights(2)
    output = run(["dvc", "repro", stages[1]], project)
    assert ran_stages(output) == stages, output
    record = json.loads((project / f"data/weights/{backbone}/source.json").read_text())
    assert record["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest() != staged
    assert json.loads((project / f"data/features/{backbone}/meta.json").read_text())["weights_sha256"] == record[
        "sha256"]
