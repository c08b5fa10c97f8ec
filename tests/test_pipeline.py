"""`dvc repro` end to end on a tiny demo, in a temporary copy of the project."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BACKBONES, copy_project, ran_stages, run, write_params


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Path:
    return copy_project(built_project, tmp_path_factory.mktemp("project"))


def test_repro_writes_every_output(project):
    meta = json.loads((project / "data/tfrecords/meta.json").read_text())
    assert meta["image_size"] == 32 and sum(meta["counts"].values()) > 0
    for split, names in meta["shards"].items():
        assert all((project / "data/tfrecords" / name).stat().st_size > 0 for name in names), split
    index = pd.read_csv(project / "data/interim/index.csv")
    truth = pd.read_csv(project / "data/raw/demo-truth.csv")
    assert sorted(index["path"]) == sorted(truth["path"])
    splits = pd.read_csv(project / "data/splits.csv")
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
    for split in ("train", "val", "test"):
        assert (project / f"data/features/{backbone}/{split}.npz").is_file()
    for name in ("head.keras", "model.keras"):
        assert (project / f"models/{backbone}/{name}").stat().st_size > 0
    for stage in ("train", "finetune"):
        assert "loss" in json.loads((project / f"dvclive/{stage}/{backbone}/metrics.json").read_text())["train"]
    report = json.loads((project / f"metrics/eval/{backbone}.json").read_text())
    assert report["pretrained"] is False and 0 <= report["balanced_accuracy"] <= 1
    predictions = pd.read_csv(project / f"plots/eval/{backbone}/predictions.csv")
    assert len(predictions) == report["test_images"]


def test_experiment_on_lr_reruns_only_training_stages(project):
    output = run(["dvc", "exp", "run", "-S", "lr=0.0005"], project)
    ran = {stage.split("@")[0] for stage in ran_stages(output)}
    assert ran == {"train", "finetune", "evaluate", "compare"}, output
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
