"""Classical baselines: grouped folds, the models and the stage on synthetic features (kNN tie rules: test_knn.py)."""

import json

import numpy as np
import pytest

from pipeline.__main__ import main as cli
from pipeline.analysis.baselines import check_folds, grouped_folds, run_baselines
from pipeline.core.errors import PipelineError
from pipeline.core.params import BaselinesParams, KnnParams
from tests.synthetic_features import BACKBONE, N_CLASSES, synthetic_pool, write_project

METRICS = {"cv": {"balanced_accuracy", "balanced_accuracy_std", "macro_f1"},
           "test": {"accuracy", "balanced_accuracy", "macro_f1", "qwk"}}


def test_grouped_folds_keep_subjects_whole():
    rows = synthetic_pool(leak=False).rows
    subjects = rows["subject"].to_numpy()
    folds = grouped_folds(rows["label"].to_numpy(), subjects, 4, seed=0)
    held_out = np.concatenate([fold[1] for fold in folds])
    assert sorted(held_out) == list(range(len(rows)))
    with pytest.raises(PipelineError, match="fold 0: subject s1 is on both sides"):
        check_folds([(np.array([0, 1]), np.array([2]))], np.array(["s0", "s1", "s1"]))
    with pytest.raises(PipelineError, match="baselines.folds = 40 is more than the 24 subjects"):
        grouped_folds(rows["label"].to_numpy(), subjects, 40, seed=0)


def test_baselines_learn_the_classes():
    params = BaselinesParams(backbone=BACKBONE, folds=3, knn=KnnParams(k=5, ties=("nearest", "random")))
    report = run_baselines(synthetic_pool(leak=False), N_CLASSES, params, seed=0, ordinal=True)
    assert set(report["models"]) == {"knn_nearest", "knn_random", "tree_gini", "tree_entropy", "linear_svm",
                                     "rbf_svm", "logistic_regression"}
    assert report["models"]["logistic_regression"]["cv"]["balanced_accuracy"] > 0.5
    assert report["models"]["logistic_regression"]["test"]["balanced_accuracy"] > 0.5


def test_stage_writes_the_shape_compare_reads(tmp_path, monkeypatch):
    write_project(tmp_path, synthetic_pool(leak=False), baselines={"backbone": BACKBONE, "folds": 3})
    monkeypatch.chdir(tmp_path)
    assert cli(["baselines"]) == 0
    report = json.loads((tmp_path / "metrics/baselines.json").read_text())
    assert set(report) == {"backbone", "folds", "models"} and report["folds"] == 3
    for scores in report["models"].values():
        assert {part: set(values) for part, values in scores.items()} == METRICS
        assert scores["test"]["balanced_accuracy"] > 2 / N_CLASSES and scores["test"]["accuracy"] > 2 / N_CLASSES


def test_every_baseline_beats_chance_on_separable_features():
    """Chance is 1/4 balanced accuracy (a most-frequent-class dummy scores exactly that); each model gets twice it."""
    params = BaselinesParams(backbone=BACKBONE, folds=3, knn=KnnParams(k=5, ties=("nearest", "shrink", "random")))
    report = run_baselines(synthetic_pool(leak=False), N_CLASSES, params, seed=0, ordinal=True)
    assert len(report["models"]) == 8
    for name, scores in report["models"].items():
        for part in ("cv", "test"):
            assert scores[part]["balanced_accuracy"] > 2 / N_CLASSES, (name, part, scores[part])
            assert scores[part]["macro_f1"] > 1 / N_CLASSES, (name, part, scores[part])


def test_unordered_classes_get_no_qwk_and_the_same_other_scores():
    params = BaselinesParams(backbone=BACKBONE, folds=3, knn=KnnParams(k=5, ties=("nearest",)))
    pool = synthetic_pool(leak=False)
    unordered = run_baselines(pool, N_CLASSES, params, seed=0, ordinal=False)
    ordinal = run_baselines(pool, N_CLASSES, params, seed=0, ordinal=True)
    for name, scores in unordered["models"].items():
        assert set(scores["test"]) == METRICS["test"] - {"qwk"}, name
        assert scores["test"] == {key: value for key, value in ordinal["models"][name]["test"].items() if key != "qwk"}
        assert scores["cv"] == ordinal["models"][name]["cv"]
