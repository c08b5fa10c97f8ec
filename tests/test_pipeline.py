"""`dvc repro` end to end on a tiny demo, in a temporary copy of the project."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, TINY_DEDUPE, TINY_SYNTH, raw_params

PROJECT_FILES = ("dvc.yaml", "pipeline", ".dvc/plots")
BACKBONES = ["MobileNetV3Small", "MobileNetV2"]
TINY_TRAINING = {
    "backbones": BACKBONES,
    "epochs": 1,
    "fine_tune_epochs": 1,
    "fine_tune": {"max_train_images": 64},
    "augment": {"views": 1},
    "evaluate": {"bootstrap": 20, "latency_runs": 2},
}


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def write_params(project: Path, **overrides) -> None:
    raw = raw_params(synth=TINY_SYNTH, dedupe=TINY_DEDUPE, image_size=32, **{**TINY_TRAINING, **overrides})
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("project")
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    for name in PROJECT_FILES:
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, project / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    write_params(project)
    commit(project, "project")  # dvclive, like any DVC project, needs a commit to stand on
    run(["dvc", "repro"], project)
    commit(project, "baseline")
    return project


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", message], project)


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
    ran = {line.split("'")[1].split("@")[0] for line in output.splitlines() if line.startswith("Running stage")}
    assert ran == {"train", "finetune", "evaluate"}, output
    diff = run(["dvc", "metrics", "diff", "--all"], project)
    assert all(f"metrics/eval/{backbone}.json" in diff for backbone in BACKBONES), diff
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "--force"], project)


def test_second_repro_runs_nothing(project):
    output = run(["dvc", "repro"], project)
    assert "Running stage" not in output


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
