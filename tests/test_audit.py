"""The leakage audit on small synthetic features that encode each subject's identity."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import binom

from pipeline.__main__ import main as cli
from pipeline.analysis import audit
from pipeline.analysis.audit import chance_null, run_audit, split_rows
from pipeline.analysis.straddle import cut_subjects, straddling_images
from pipeline.core.params import AuditParams
from pipeline.tables.features import Pool, load_pool
from tests.synthetic_features import BACKBONE, N_CLASSES, synthetic_pool, write_project

PARAMS = AuditParams(backbone=BACKBONE, repeats=30, test_share=0.2)


def test_load_pool_keeps_view_zero_and_joins_the_index(tmp_path):
    pool = synthetic_pool(leak=False)
    write_project(tmp_path, pool)
    loaded = load_pool(tmp_path / "data/features" / BACKBONE, tmp_path / "data/interim/index.csv")
    assert len(loaded.rows) == len(pool.rows)
    merged = loaded.rows.merge(pool.rows, on="path", suffixes=("", "_truth"))
    for column in ("label", "kind", "subject", "split"):
        assert (merged[column] == merged[f"{column}_truth"]).all()


def test_splits_draw_from_their_pools():
    rows = synthetic_pool(leak=False).rows
    rng = np.random.default_rng(0)
    train, test = split_rows(rows, "naive", 0.2, rng)
    assert len(test) == round(0.2 * len(rows)) and not set(train) & set(test)
    train, test = split_rows(rows, "originals", 0.2, rng)
    assert (rows.loc[np.concatenate([train, test]), "kind"] == "original").all()
    train, test = split_rows(rows, "subject", 0.2, rng)
    assert not set(rows.loc[train, "subject"]) & set(rows.loc[test, "subject"])


def test_chance_interval_is_binomial_over_subjects_not_images():
    subjects = 100
    groups = np.repeat(np.arange(subjects), 32)
    null = chance_null([(groups, np.zeros(len(groups), int))], N_CLASSES, 10_000, np.random.default_rng(0))
    low, high = np.quantile(null[:, 0], [0.025, 0.975])
    assert null[:, 0].mean() == pytest.approx(0.25, abs=0.005)
    assert low == pytest.approx(binom.ppf(0.025, subjects, 0.25) / subjects, abs=0.011)
    assert high == pytest.approx(binom.ppf(0.975, subjects, 0.25) / subjects, abs=0.011)
    assert high - low > 2 * (binom.ppf(0.975, len(groups), 0.25) - binom.ppf(0.025, len(groups), 0.25)) / len(groups)


def test_honest_split_passes_and_naive_split_shows_the_leak():
    report = run_audit(synthetic_pool(leak=False), N_CLASSES, PARAMS, seed=0)
    splits = report["splits"]
    assert report["passed"] and splits["subject"]["verdict"] != "above chance"
    assert splits["subject"]["shared_subjects"] == 0 and splits["subject"]["real"]["accuracy"] > 0.5
    for name in ("naive", "originals"):
        assert splits[name]["verdict"] == "above chance" and splits[name]["shuffled"]["accuracy"] > 0.9


def test_a_planted_leak_fails_the_stage(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, synthetic_pool(leak=True), audit={"repeats": PARAMS.repeats})
    monkeypatch.chdir(tmp_path)
    assert cli(["audit"]) == 1
    message = capsys.readouterr().err
    assert "leakage audit failed: split by subject" in message and "1 of them also in train" in message
    report = json.loads((tmp_path / "metrics/audit.json").read_text())
    assert not report["passed"] and report["splits"]["subject"]["verdict"] == "above chance"
    with Image.open(tmp_path / "plots/audit/audit.png") as chart:
        assert chart.format == "PNG" and min(chart.size) > 100
        chart.verify()
    assert len(pd.read_csv(tmp_path / "plots/audit/audit.csv")) == 6


def test_a_below_chance_score_passes_the_audit_with_a_warning(tmp_path, monkeypatch, caplog):
    """A model that is always wrong scores below chance: leakage cannot do that, so the stage passes and warns."""
    write_project(tmp_path, synthetic_pool(leak=False), audit={"repeats": 5})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(audit, "fit_predict", lambda features, labels, train, test: (labels[test] + 1) % N_CLASSES)
    with caplog.at_level("WARNING"):
        assert cli(["audit"]) == 0
    report = json.loads((tmp_path / "metrics/audit.json").read_text())
    subject = report["splits"]["subject"]
    assert subject["shuffled"]["accuracy"] == 0 < subject["chance"]["accuracy"]["low"]
    assert subject["verdict"] == "below chance" and report["passed"] is True
    assert "unlucky draw" in caplog.text


def audit_with_cut_subjects(tmp_path, monkeypatch, capsys, cut_off: list[str]) -> str:
    """Run the audit, expecting a failure, on the honest pool with the originals `cut_off` (of train subjects) found as
    subjects of their own (`<subject>b`) in test; its error message."""
    pool = synthetic_pool(leak=False)
    cut = pool.rows["path"].isin(cut_off)
    pool.rows.loc[cut, "subject"] += "b"
    pool.rows.loc[cut, "split"] = "test"
    kept = ~pool.rows["source"].isin(pool.rows.loc[cut, "path"]) | cut  # their copies, train only, go with them
    rows = pool.rows[kept].reset_index(drop=True)
    write_project(tmp_path, Pool(features=pool.features[kept.to_numpy()], rows=rows), audit={"repeats": 5})
    monkeypatch.chdir(tmp_path)
    assert cli(["audit"]) == 1
    return capsys.readouterr().err


def test_subjects_cut_in_two_by_their_grouping_fail_the_pixel_check_naming_the_images(tmp_path, monkeypatch, capsys):
    """Dedupe's error planted: slices 0-3 of train subjects s2 and s3 of every class found as subjects of their own,
    dealt to test: 8 cuts, past the flags an honest split may give though none of train's originals is flagged."""
    message = audit_with_cut_subjects(tmp_path, monkeypatch, capsys, [f"orig/c{label}/s{number}-{slice_}.jpg"
                                      for label in range(4) for number in (2, 3) for slice_ in range(4)])
    assert "of 192 originals" in message and "orig/c1/s2-3.jpg ~ orig/c1/s2-4.jpg" in message, message
    report = json.loads((tmp_path / "metrics/audit.json").read_text())["straddling"]
    assert report["flagged"] > report["bound"] > 0 and not report["passed"], report


def test_an_honest_flag_passes_when_train_shows_none():
    """Train's honest rate of 0 in m is an estimate, not a certainty: a test subject whose end slice happens to lie
    near a train subject's end (flagged, with that train end) stays within the bound, where reading 0 failed it."""
    angles = np.array([0.0, 0.1, 0.2, 1.0, 1.1, 1.2, 0.3, 0.45, 0.6, 2.0, 2.1, 2.2])  # train a, b; test c, d
    views = np.column_stack([np.cos(angles), np.sin(angles)])
    report = straddling_images(views, [f"x{index}" for index in range(12)], ["A"] * 12,
                               [name for name in "abcd" for _ in range(3)], ["train"] * 6 + ["test"] * 6)
    assert report["honest_rate"] == 0 and report["flagged"] >= 1 and report["passed"], report
    assert "x6" in report["examples"]


def test_an_honest_split_passes_the_pixel_check(tmp_path, monkeypatch):
    write_project(tmp_path, synthetic_pool(leak=False), audit={"repeats": 5})
    monkeypatch.chdir(tmp_path)
    assert cli(["audit"]) == 0
    report = json.loads((tmp_path / "metrics/audit.json").read_text())
    straddling, cut = report["straddling"], report["cut_subjects"]
    assert straddling["flagged"] == 0 and straddling["checked"] == 192 and straddling["passed"]
    assert cut["cut"] == 0 and cut["pairs_checked"] > 0 and cut["passed"], cut


def on_a_plane(points: list[tuple[float, float]]) -> np.ndarray:
    """Unit views of points in a plane, near enough that their distances are the points' (x 0.01)."""
    views = np.column_stack([np.ones(len(points)), 0.01 * np.array(points, float)])
    return views / np.linalg.norm(views, axis=1, keepdims=True)


def test_a_subject_cut_in_two_goes_on_across_the_cut_where_two_alike_subjects_do_not():
    # One chain of 12 slices along x, cut after the sixth: its parts go on one into the other. Two chains side by
    # side, 0.5 apart at every level: nearer each other than their steps, but alike at every level, not going on.
    cut = cut_subjects(on_a_plane([(x, 0) for x in range(12)]), [f"x{i}" for i in range(12)], ["A"] * 12,
                       ["a"] * 6 + ["b"] * 6, ["train"] * 6 + ["test"] * 6)
    assert cut["cut"] == 1 and not cut["passed"] and cut["examples"][0]["images"] == ["x5", "x6"], cut
    assert cut["examples"][0]["score"] == pytest.approx(3.0, abs=0.01)
    alike = cut_subjects(on_a_plane([(x, 0) for x in range(6)] + [(x, 0.5) for x in range(6)]),
                         [f"x{i}" for i in range(12)], ["A"] * 12, ["a"] * 6 + ["b"] * 6, ["train"] * 6 + ["test"] * 6)
    assert alike["cut"] == 0 and alike["passed"] and alike["highest_score"] == pytest.approx(1.0, abs=0.01), alike
    same_split = cut_subjects(on_a_plane([(x, 0) for x in range(12)]), [f"x{i}" for i in range(12)], ["A"] * 12,
                              ["a"] * 6 + ["b"] * 6, ["train"] * 12)
    assert same_split["pairs_checked"] == 0 and same_split["passed"]


def test_one_subject_cut_in_two_by_its_grouping_fails_the_audit_naming_its_images(tmp_path, monkeypatch, capsys):
    """Dedupe's error planted once: slices 0-3 of train subject s2 of class 1 found as a subject of their own, in test;
    two images look like the ends of a straddling subject, as many as an honest split may give, but the two parts
    go on one into the other."""
    message = audit_with_cut_subjects(tmp_path, monkeypatch, capsys, [f"orig/c1/s2-{slice_}.jpg" for slice_ in range(4)])
    assert "go on one into the other" in message and "orig/c1/s2-4.jpg ~ orig/c1/s2-3.jpg" in message, message
    report = json.loads((tmp_path / "metrics/audit.json").read_text())
    assert report["straddling"]["passed"] and not report["cut_subjects"]["passed"], report
    assert report["cut_subjects"]["examples"][0]["subjects"] == ["c1/s2", "c1/s2b"]


def test_a_leaking_fold_fails_the_audit_naming_the_fold(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, synthetic_pool(leak=True), audit={"repeats": PARAMS.repeats}, split={"folds": 3})
    (tmp_path / "data/features/fold-2").mkdir()
    (tmp_path / "data/features" / BACKBONE).rename(tmp_path / "data/features/fold-2" / BACKBONE)
    monkeypatch.chdir(tmp_path)
    assert cli(["audit", "--fold", "2"]) == 1
    assert capsys.readouterr().err.startswith("error: fold 2 of 3: leakage audit failed: split by subject")
    report = json.loads((tmp_path / "metrics/audit/fold-2.json").read_text())
    assert not report["passed"] and report["level"] == pytest.approx(1 - 0.05 / 3)  # 3 audits, 5% false alarms
    assert (tmp_path / "plots/audit/fold-2/audit.png").is_file()
    assert cli(["audit", "--fold", "3"]) == 1
    assert "--fold 3: split.folds is 3, so the folds are 0 to 2" in capsys.readouterr().err
