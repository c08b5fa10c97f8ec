"""Classical baselines: grouped folds, the models on synthetic features and pixels, the reductions, and the stage
(kNN tie rules: test_knn.py)."""

import json

import numpy as np
import pytest

from pipeline.__main__ import main as cli
from pipeline.analysis.baselines import check_folds, fold_count, grouped_folds, run_baselines
from pipeline.core.errors import PipelineError
from pipeline.core.params import BaselinesParams, KnnParams, ReductionsParams
from pipeline.imaging.tfrecords import read_pixels
from pipeline.tables.features import Pool
from tests.synthetic_features import (
    BACKBONE,
    N_CLASSES,
    pixel_pool,
    synthetic_pool,
    write_project,
    write_tfrecords,
)

CLASSES = tuple(f"class{k}" for k in range(N_CLASSES))
REDUCTIONS = ReductionsParams(input="pixels", strategies=("one_vs_rest", "one_vs_one", "output_code"),
                              base_models=("linear_svm", "logistic_regression"), code_size=1.25)


def baselines_params(folds: int = 3, ties: tuple[str, ...] = ("nearest",), **reductions) -> BaselinesParams:
    return BaselinesParams(backbone=BACKBONE, pixel_size=8, folds=folds, knn=KnnParams(k=5, ties=ties),
                           reductions=REDUCTIONS.model_copy(update=reductions))


def run(pool: Pool, params: BaselinesParams, ordinal: bool = True) -> dict:
    return run_baselines(pool, pixel_pool(pool), CLASSES, params, seed=0, ordinal=ordinal)


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


def test_baselines_learn_the_classes():
    report = run(synthetic_pool(leak=False), baselines_params(ties=("nearest", "random")))
    assert set(report["models"]) == {"knn_nearest", "knn_random", "tree_gini", "tree_entropy", "linear_svm",
                                     "rbf_svm", "logistic_regression"}
    assert report["models"]["logistic_regression"]["cv"]["balanced_accuracy"] > 0.5
    assert report["models"]["logistic_regression"]["test"]["balanced_accuracy"] > 0.5


def test_stage_writes_the_shape_compare_reads(tmp_path, monkeypatch):
    pool = synthetic_pool(leak=False)
    write_project(tmp_path, pool, image_size=32, baselines={"backbone": BACKBONE, "folds": 3, "pixel_size": 8})
    write_tfrecords(tmp_path, pool)
    monkeypatch.chdir(tmp_path)
    assert cli(["baselines"]) == 0
    report = json.loads((tmp_path / "metrics/baselines.json").read_text())
    assert set(report) == {"backbone", "folds", "folds_asked", "notes", "models", "pixels", "reductions"}
    assert report["folds"] == 3 and report["notes"] == []
    assert (report["pixels"]["size"], report["pixels"]["channels"]) == (8, 1)
    assert report["pixels"]["models"].keys() == report["models"].keys()
    for scores in [*report["models"].values(), *report["pixels"]["models"].values()]:
        assert {part: set(values) for part, values in scores.items()} == METRICS
        assert scores["test"]["balanced_accuracy"] > 2 / N_CLASSES and scores["test"]["accuracy"] > 2 / N_CLASSES
    assert set(report["reductions"]["models"]) == {f"{strategy}_logistic_regression"  # the committed params'
                                                   for strategy in ("one_vs_rest", "one_vs_one", "output_code")}
    for scores in report["reductions"]["models"].values():
        assert set(scores) == {"cv", "test", "binary_models", "fit_seconds"}
        assert scores["cv"]["balanced_accuracy"] > 2 / N_CLASSES


def test_every_baseline_beats_chance_on_separable_features():
    """Chance is 1/4 balanced accuracy (a most-frequent-class dummy scores exactly that); each model gets twice it."""
    report = run(synthetic_pool(leak=False), baselines_params(ties=("nearest", "shrink", "random")))
    assert len(report["models"]) == len(report["pixels"]["models"]) == 8
    for name, scores in [*report["models"].items(), *report["pixels"]["models"].items()]:
        for part in ("cv", "test"):
            assert scores[part]["balanced_accuracy"] > 2 / N_CLASSES, (name, part, scores[part])
            assert scores[part]["macro_f1"] > 1 / N_CLASSES, (name, part, scores[part])


def test_unordered_classes_get_no_qwk_and_the_same_other_scores():
    params = baselines_params(strategies=())
    pool = synthetic_pool(leak=False)
    unordered, ordinal = run(pool, params, ordinal=False), run(pool, params, ordinal=True)
    for name, scores in unordered["models"].items():
        assert set(scores["test"]) == METRICS["test"] - {"qwk"}, name
        assert scores["test"] == {key: value for key, value in ordinal["models"][name]["test"].items() if key != "qwk"}
        assert scores["cv"] == ordinal["models"][name]["cv"]


def test_each_reduction_has_the_binary_models_its_definition_says():
    """k classes: one-vs-rest k, one-vs-one k(k-1)/2, output codes int(code_size * k); each well above chance."""
    k = N_CLASSES
    report = run(synthetic_pool(leak=False), baselines_params(code_size=1.25))
    expected = {"one_vs_rest": k, "one_vs_one": k * (k - 1) // 2, "output_code": int(1.25 * k)}
    assert report["reductions"]["input"] == "pixels"
    assert {name: scores["binary_models"] for name, scores in report["reductions"]["models"].items()} == {
        f"{strategy}_{base}": count for strategy, count in expected.items()
        for base in ("linear_svm", "logistic_regression")}
    for name, scores in report["reductions"]["models"].items():
        assert scores["cv"]["balanced_accuracy"] > 2 / k and scores["test"]["balanced_accuracy"] > 2 / k, name
        assert scores["fit_seconds"] >= 0


def test_reductions_read_the_input_named():
    """Pixels of pure noise: the reductions learn on `input: features` and not on `input: pixels`."""
    pool = synthetic_pool(leak=False)
    noise = Pool(np.random.default_rng(0).random((len(pool.rows), 64)), pool.rows)
    scores = {}
    for source in ("features", "pixels"):
        params = baselines_params(strategies=("one_vs_rest",), base_models=("logistic_regression",), input=source)
        report = run_baselines(pool, noise, CLASSES, params, seed=0, ordinal=False)
        scores[source] = report["reductions"]["models"]["one_vs_rest_logistic_regression"]["cv"]["balanced_accuracy"]
    assert scores["features"] > 0.9 and scores["pixels"] < 0.5, scores
    for name in ("linear_svm", "logistic_regression"):
        assert report["models"][name]["cv"]["balanced_accuracy"] > 0.9
        assert report["pixels"]["models"][name]["cv"]["balanced_accuracy"] < 0.5


def test_pixels_of_other_images_than_the_features_stop_the_stage():
    pool = synthetic_pool(leak=False)
    shuffled = pixel_pool(pool)
    shuffled = Pool(shuffled.features[::-1], shuffled.rows.iloc[::-1].reset_index(drop=True))
    with pytest.raises(PipelineError, match="features and data/tfrecords hold other images; rerun dvc repro features@"):
        run_baselines(pool, shuffled, CLASSES, baselines_params(), seed=0, ordinal=False)


def test_pixels_are_read_from_the_tfrecords_shrunk_by_block_means(tmp_path):
    pool = synthetic_pool(leak=False)
    write_tfrecords(tmp_path, pool, size=32)
    read = read_pixels(tmp_path / "data/tfrecords", "val", 8)
    val = (pool.rows["split"] == "val").to_numpy()
    assert read["paths"].tolist() == pool.rows.loc[val, "path"].tolist()
    np.testing.assert_allclose(read["features"], pixel_pool(pool, 8).features[val], atol=1e-6)
    with pytest.raises(PipelineError, match="images of 32 px cannot be shrunk to 64 px; rerun the preprocess stage"):
        read_pixels(tmp_path / "data/tfrecords", "val", 64)


def rare(pool: Pool, label: int, keep: int) -> Pool:
    """The pool with class `label` cut to its first `keep` train or val subjects (its test subject kept)."""
    rows = pool.rows
    development = rows[(rows["label"] == label) & (rows["split"] != "test")]
    dropped = development["subject"].unique()[keep:]
    kept = ~rows["subject"].isin(dropped)
    return Pool(features=pool.features[kept.to_numpy()], rows=rows[kept].reset_index(drop=True))


def test_a_class_with_fewer_subjects_than_folds_folds_fewer_and_says_so():
    """(issue 34.6) 5 folds asked, a class with 2 subjects in train and val: 2 folds, a note naming it and the
    setting; a class with 1 subject: the folds stay, a note; no class with two: a PipelineError, no traceback."""
    pool = synthetic_pool(leak=False)
    labels, subjects = pool.rows["label"].to_numpy(), pool.rows["subject"].to_numpy()
    development = (pool.rows["split"] != "test").to_numpy()
    assert fold_count(labels[development], subjects[development], CLASSES, 5) == (5, [])
    report = run(rare(pool, 3, keep=2), baselines_params(folds=5, strategies=()))
    assert (report["folds"], report["folds_asked"]) == (2, 5)
    assert report["notes"] == ["baselines.folds = 5, but class class3 has as few as 2 subjects in train and val: "
                               "cross-validated with 2 folds (set baselines.folds: 2 to ask for that, or give the "
                               "class more subjects)"]
    report = run(rare(pool, 3, keep=1), baselines_params(folds=5, strategies=()))
    assert report["folds"] == 5 and len(report["notes"]) == 1
    assert report["notes"][0].startswith("class class3: fewer than two subjects in train and val")
    one_each = Pool(pool.features, pool.rows.assign(subject=pool.rows["label"].astype(str)))
    with pytest.raises(PipelineError, match="no class has two subjects in train and val"):
        run(one_each, baselines_params(folds=5))


def test_every_class_with_two_images_as_in_a_source_own_splits(tmp_path, monkeypatch, caplog):
    """(issue 34.6) Two train + val images per class, each its own group: the stage runs 2 folds and warns."""
    pool = synthetic_pool(leak=False)
    rows = pool.rows
    first = rows[rows["split"] == "train"].groupby("label").head(1).index.union(
        rows[rows["split"] == "val"].groupby("label").head(1).index).union(rows[rows["split"] == "test"].index)
    small = Pool(pool.features[first], rows.loc[first].reset_index(drop=True))
    small.rows["subject"] = small.rows["path"]
    write_project(tmp_path, small, image_size=32, baselines={"backbone": BACKBONE, "folds": 5, "pixel_size": 8})
    write_tfrecords(tmp_path, small)
    monkeypatch.chdir(tmp_path)
    assert cli(["baselines"]) == 0
    report = json.loads((tmp_path / "metrics/baselines.json").read_text())
    assert report["folds"] == 2 and "classes class0, class1, class2, class3 have as few as 2" in report["notes"][0]
    assert any(record.levelname == "WARNING" and "cross-validated with 2 folds" in record.getMessage()
               for record in caplog.records)
