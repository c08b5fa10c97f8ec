"""A tiny DVC project cross-validated by subject (split.folds: 3, two backbones): every subject tested once, the
pooled out-of-fold predictions, the fold stages a machine can run alone."""

import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score

from pipeline.core import paths
from pipeline.core.dvc_yaml import check_fold_stages, synced
from pipeline.core.errors import PipelineError
from pipeline.core.params import SPLITS, load_params
from pipeline.core.paths import truth_file
from pipeline.core.registry import get_backbone
from pipeline.networks.backbones import build_base
from pipeline.networks.features import write_features
from pipeline.tables.features import load_features, split_file
from tests.conftest import (
    BACKBONES,
    ROOT,
    commit,
    copy_project,
    edit_params,
    init_project,
    ran_stages,
    run,
)

FOLDS = 3
pytestmark = pytest.mark.timeout(1800)  # it trains 2 backbones 3 times: over 15 minutes on a busy machine


@pytest.fixture(scope="module")
def folded_project(module_tmp) -> Path:
    """The tiny project with split.folds: 3, its dvc.yaml synced, every fold evaluated and fold 1 audited by DVC, then
    compare run by hand (through DVC it would wait for explain and baselines, which read fold 0 only)."""
    project = module_tmp / "repo"
    init_project(project)
    edit_params(project, split={"folds": FOLDS}, audit={"repeats": 5})
    run([sys.executable, "-m", "pipeline", "sync-dvc-yaml"], project)
    commit(project, "three folds")
    run(["dvc", "repro", "evaluate", "evaluate_fold", "audit_fold@1"], project)
    run([sys.executable, "-m", "pipeline", "compare"], project)
    return project


def test_every_true_subject_is_tested_in_exactly_one_fold_and_never_in_two_splits_of_a_fold(folded_project):
    splits = pd.read_csv(folded_project / paths.SPLITS, dtype=str, keep_default_na=False)
    truth = pd.read_csv(truth_file(folded_project / "data/raw/demo"), dtype=str, keep_default_na=False)
    splits["true_subject"] = splits["path"].map(truth.set_index("path")["subject"])
    assert splits["true_subject"].notna().all()
    tested = splits[splits["split"] == "test"].groupby("true_subject")["fold"].nunique()
    originals = set(truth.loc[truth["path"].str.startswith("OriginalDataset/"), "subject"])
    assert set(tested.index) == originals and (tested == 1).all()
    assert (splits.groupby(["fold", "true_subject"])["split"].nunique() == 1).all()


def test_the_pooled_predictions_hold_every_usable_original_once_and_the_tests_use_every_subject(folded_project):
    index = pd.read_csv(folded_project / paths.INDEX, dtype=str, keep_default_na=False)
    usable = index.loc[(index["status"] == "ok") & (index["kind"] == "original"), "path"]
    summary = json.loads((folded_project / paths.SUMMARY).read_text())
    for backbone in BACKBONES:
        pooled = pd.concat([pd.read_csv(folded_project / paths.predictions(backbone, fold), dtype=str)
                            for fold in range(FOLDS)])
        assert sorted(pooled["path"]) == sorted(usable)  # each once
        score = balanced_accuracy_score(pooled["label"], pooled["predicted"])
        assert summary["models"][backbone]["balanced_accuracy"] == pytest.approx(score)  # scored on all of them
        spread = summary["folds"]["models"][backbone]
        assert len(spread["per_fold"]) == FOLDS and spread["std"] >= 0
    assert summary["folds"]["k"] == FOLDS and summary["test_images"] == len(usable)
    assert summary["test_subjects"] == index.loc[usable.index, "subject"].nunique()
    assert set(BACKBONES) - {summary["reference"]["model"]} <= set(summary["tests"])
    assert {test["permutation"]["subjects"] for test in summary["tests"].values()} == {summary["test_subjects"]}
    report = (folded_project / paths.REPORT).read_text()
    assert f"## Cross-validated by subject: {FOLDS} folds" in report
    spread = summary["folds"]["models"][BACKBONES[0]]
    scores = [*spread["per_fold"], spread["mean"], spread["std"]]
    assert f"| {BACKBONES[0]} | " + " | ".join(f"{score:.3f}" for score in scores) + " |" in report


def test_a_fold_is_audited_and_its_stages_run_alone(folded_project):
    assert json.loads((folded_project / "metrics/audit/fold-1.json").read_text())["passed"]
    output = run(["dvc", "repro", "--force", "--single-item", f"evaluate_fold@{BACKBONES[0]}-2"], folded_project)
    assert f"Running stage 'evaluate_fold@{BACKBONES[0]}-2'" in output
    assert "Running stage 'evaluate@" not in output


def test_one_fold_leaves_dvc_yaml_as_it_is_and_compare_asks_for_the_fold_stages(tmp_path, monkeypatch):
    committed = (ROOT / "dvc.yaml").read_text()
    backbones = yaml.safe_load((ROOT / "params.yaml").read_text())["backbones"]
    assert synced(committed, backbones, 1) == committed
    three = yaml.safe_load(synced(committed, backbones, FOLDS))["stages"]
    assert three["train_fold"]["matrix"] == {"backbone": "${backbones}", "fold": [1, 2]}
    assert "data/features/fold-${item.fold}/${item.backbone}" in three["train_fold"]["deps"]
    with pytest.raises(PipelineError, match="no stages for split.folds = 3 and weights = none: run `python -m pipeline "
                                            "sync-dvc-yaml`"):
        check_fold_stages(committed, FOLDS, "none")


def test_with_pretrained_weights_the_later_folds_features_depend_on_fold_0_s_and_only_then(tmp_path):
    committed = (ROOT / "dvc.yaml").read_text()
    fold_0 = yaml.safe_load(committed)["stages"]["features"]["outs"][0]
    for weights, shared in (("none", False), ("imagenet", True), ("pretrained/base.weights.h5", True)):
        three = synced(committed, ["VGG19"], FOLDS, weights)
        assert (fold_0 in yaml.safe_load(three)["stages"]["features_fold"]["deps"]) == shared
        check_fold_stages(three, FOLDS, weights)
    with pytest.raises(PipelineError, match="no stages for split.folds = 3 and weights = imagenet"):
        check_fold_stages(synced(committed, ["VGG19"], FOLDS, "none"), FOLDS, "imagenet")


@pytest.fixture(scope="module")
def pretrained_folds(folded_project, module_tmp) -> Path:
    """A copy of the folded project with `weights` a file of BACKBONES[0]'s in pretrained/, its dvc.yaml synced."""
    project = copy_project(folded_project, module_tmp / "pretrained")
    keras.utils.set_random_seed(1)  # random weights, where a user's file holds trained ones
    build_base(get_backbone(BACKBONES[0]), "none", 32).save_weights(project / "pretrained/base.weights.h5")
    edit_params(project, weights="pretrained/base.weights.h5")
    run([sys.executable, "-m", "pipeline", "sync-dvc-yaml"], project)
    commit(project, "pretrained weights")
    return project


def test_with_pretrained_weights_a_later_fold_takes_its_unaugmented_embeddings_from_fold_0(pretrained_folds):
    output = run(["dvc", "repro", f"features_fold@{BACKBONES[0]}-1"], pretrained_folds)
    assert ran_stages(output) == [f"weights@{BACKBONES[0]}", f"features@{BACKBONES[0]}",
                                  f"features_fold@{BACKBONES[0]}-1"], output
    fold_1 = pretrained_folds / paths.features_dir(BACKBONES[0], 1)
    assert json.loads((fold_1 / "meta.json").read_text())["view_0_from"] == str(paths.features_dir(BACKBONES[0]))
    splits = pd.read_csv(pretrained_folds / paths.SPLITS, dtype=str, keep_default_na=False)
    for split in SPLITS:
        arrays = load_features(fold_1, split)
        assert sorted(arrays["paths"][arrays["view"] == 0]) == sorted(
            splits.loc[(splits["fold"] == "1") & (splits["split"] == split), "path"])
    assert (load_features(fold_1, "train")["view"] == 1).sum() == (load_features(fold_1, "train")["view"] == 0).sum()


def test_the_shared_embeddings_are_looked_up_and_only_the_scans_fold_0_lacks_go_through_the_base(
        pretrained_folds, tmp_path, monkeypatch):
    monkeypatch.chdir(pretrained_folds)
    run(["dvc", "repro", f"features@{BACKBONES[0]}"], pretrained_folds)
    marked = Path(shutil.copytree(paths.features_dir(BACKBONES[0]), tmp_path / "fold-0"))
    for split in SPLITS:  # embeddings no base computes: only a lookup can give them
        arrays = load_features(marked, split)
        arrays["features"][arrays["view"] == 0] = -7.0
        np.savez(split_file(marked, split), **arrays)
    params = load_params()
    for out, shared in (("shared", marked), ("alone", None)):
        write_features(paths.tfrecords_dir(1), paths.weights_dir(BACKBONES[0]), tmp_path / out, BACKBONES[0], params,
                       shared)
    in_fold_0 = {str(path) for split in SPLITS for path in load_features(marked, split)["paths"]}
    looked_up = computed = 0
    for split in SPLITS:
        shared, alone = (load_features(tmp_path / out, split) for out in ("shared", "alone"))
        assert all((shared[name] == alone[name]).all() for name in ("labels", "paths", "subjects", "view"))
        augmented = alone["view"] > 0  # the augmented views go through the base as they would alone, bit for bit
        assert np.array_equal(shared["features"][augmented], alone["features"][augmented])
        found = np.isin(shared["paths"], list(in_fold_0)) & ~augmented
        assert (shared["features"][found] == -7.0).all()
        lacking = ~found & ~augmented  # copies of the subjects fold 0 held out of its train
        scale = np.abs(alone["features"][lacking]).max(initial=0.0)  # a random base's embeddings are tiny
        np.testing.assert_allclose(shared["features"][lacking], alone["features"][lacking], rtol=1e-4,
                                   atol=1e-4 * scale)
        looked_up, computed = looked_up + found.sum(), computed + lacking.sum()
    assert looked_up > 0 and computed > 0


def expected_outs(stage: str, backbone: str, fold: int) -> set[Path]:
    """What pipeline/core/paths.py says a fold stage writes."""
    model = paths.model_files(backbone, fold)
    return {
        "features_fold": {paths.features_dir(backbone, fold), paths.feature_metrics(backbone, fold)},
        "train_fold": {model.head, paths.live_metrics("train", backbone, fold)},
        "finetune_fold": {model.model, model.meta, paths.live_metrics("finetune", backbone, fold)},
        "evaluate_fold": {paths.predictions(backbone, fold), paths.val_predictions(backbone, fold),
                          paths.eval_metrics(backbone, fold), paths.confusion(backbone, fold),
                          paths.roc(backbone, fold)},
        "audit_fold": {paths.in_fold(paths.AUDIT_METRICS, fold), paths.in_fold(paths.AUDIT_PLOTS, fold) / "audit.png",
                       paths.in_fold(paths.AUDIT_PLOTS, fold) / "audit.csv"},
    }[stage]


def test_the_fold_stages_write_where_the_paths_module_says_and_run_their_fold(tmp_path):
    from dvc.repo import Repo
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["split"]["folds"] = FOLDS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text(synced((ROOT / "dvc.yaml").read_text(), params["backbones"], FOLDS))
    folded = [stage for stage in Repo(str(tmp_path)).index.stages if "_fold@" in stage.name]
    assert len(folded) == (FOLDS - 1) * (4 * len(params["backbones"]) + 1)
    for stage in folded:
        name, key = stage.name.split("@")
        backbone, fold = (params["audit"]["backbone"], key) if name == "audit_fold" else key.rsplit("-", 1)
        assert {Path(str(out.def_path)) for out in stage.outs} == expected_outs(name, backbone, int(fold))
        assert stage.cmd.endswith(f" --fold {fold}")
