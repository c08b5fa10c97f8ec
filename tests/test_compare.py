"""The compare stage on small synthetic evaluations: ensembles, rows, paired tests, and byte-identical outputs."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import cohen_kappa_score

from pipeline.__main__ import main as cli
from pipeline.analysis.comparison import aligned, read_predictions, summarize
from pipeline.analysis.metrics import headline_metrics, score_predictions
from pipeline.analysis.report import tests as gap_table
from pipeline.core.errors import PipelineError
from pipeline.core.params import parse_params
from tests.conftest import raw_params

BACKBONES = tuple(raw_params()["backbones"])  # other sections may name them (audit.backbone)
CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
VAL_LOSSES = {name: 1.0 + (index % 3) / 4 for index, name in enumerate(BACKBONES)}
RESAMPLES = 10
OUTPUTS = ("metrics/summary.json", "reports/comparison.md", "plots/compare/summary.csv",
           "plots/compare/any_dementia_roc.csv", "plots/compare/balanced_accuracy.png",
           "plots/compare/accuracy_latency.png", "plots/compare/accuracy_size.png",
           "plots/compare/any_dementia_roc.png")


def tiny_raw() -> dict:
    return raw_params(evaluate={"bootstrap": RESAMPLES})


def predictions(backbone: str, strength: float) -> pd.DataFrame:
    """evaluate's predictions.csv for 12 subjects of 3 slices; `strength` makes the model more often right."""
    rng = np.random.default_rng(len(backbone) + int(strength * 10))
    labels = np.repeat(np.arange(12) % 4, 3)
    logits = rng.normal(size=(len(labels), 4)) + strength * np.eye(4)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"path": [f"img{i:02d}.jpg" for i in range(len(labels))],
                          "subject": np.repeat([f"s{i:02d}" for i in range(12)], 3),
                          "label": np.array(CLASSES)[labels], "label_index": labels,
                          "predicted": np.array(CLASSES)[probabilities.argmax(axis=1)]})
    for index, name in enumerate(CLASSES):
        frame[f"prob_{name}"] = probabilities[:, index]
    return frame


def evaluation(frame: pd.DataFrame, index: int) -> dict:
    """A metrics/eval/<backbone>.json as evaluate writes it (the fields compare reads)."""
    labels, subjects, probabilities = aligned({"m": frame}, CLASSES)
    return {**score_predictions(labels, probabilities["m"], subjects, CLASSES, RESAMPLES, 42),
            "params": 1000 * (index + 1), "size_mb": 2.0 * (index + 1), "pretrained": False,
            "fine_tuning_kept": index != 1,
            "latency_ms": {"batch_1": 1.5 * (index + 1), "batch_32": 0.5 * (index + 1)}}


def write_run(root: Path) -> None:
    """The inputs compare reads, laid out under `root` as the earlier stages leave them."""
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_raw()))
    for index, name in enumerate(BACKBONES):
        frame = predictions(name, 1.0 + index)
        (root / "plots/eval" / name).mkdir(parents=True)
        frame.to_csv(root / "plots/eval" / name / "predictions.csv", index=False)
        (root / "metrics/eval").mkdir(parents=True, exist_ok=True)
        (root / "metrics/eval" / f"{name}.json").write_text(json.dumps(evaluation(frame, index)))
        (root / "metrics/features").mkdir(parents=True, exist_ok=True)
        (root / "metrics/features" / f"{name}.json").write_text(json.dumps({"seconds": 1.0}))
        finetune = {"seconds": 3.5, "val_loss": VAL_LOSSES[name]}
        for stage, summary in (("train", {"seconds": 2.0}), ("finetune", finetune)):
            live = root / "dvclive" / stage / name
            live.mkdir(parents=True)
            (live / "metrics.json").write_text(json.dumps(summary))


def digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in OUTPUTS}


@pytest.fixture(scope="module")
def summary() -> dict:
    frames = {name: predictions(name, 1.0 + index) for index, name in enumerate(BACKBONES)}
    baselines = {"backbone": BACKBONES[0], "folds": 5, "models": {
        "knn": {"cv": {}, "test": {"accuracy": 0.5, "balanced_accuracy": 0.45, "macro_f1": 0.4, "qwk": 0.3}}}}
    return summarize({name: evaluation(frame, index) for index, (name, frame) in enumerate(frames.items())}, frames,
                     VAL_LOSSES, dict.fromkeys(BACKBONES, 6.5), baselines, parse_params(tiny_raw()))


def test_rows_hold_backbones_then_ensembles_then_baselines(summary):
    assert list(summary["models"]) == [*BACKBONES, "ensemble_mean", "ensemble_val_loss", "knn"]
    baseline = summary["models"]["knn"]
    assert baseline["kind"] == f"baseline ({BACKBONES[0]} features)" and baseline["balanced_accuracy"] == 0.45
    assert baseline["latency_ms"] is None and baseline["balanced_accuracy_low"] is None
    mean = summary["models"]["ensemble_mean"]
    n = len(BACKBONES)
    assert mean["params"] == 1000 * n * (n + 1) / 2 and mean["latency_ms"] == pytest.approx(1.5 * n * (n + 1) / 2)
    assert mean["training_seconds"] == 6.5 * n
    assert mean["balanced_accuracy_low"] <= mean["balanced_accuracy"] <= mean["balanced_accuracy_high"]
    best = max(BACKBONES, key=lambda name: summary["models"][name]["balanced_accuracy"])
    assert summary["best"] == best and set(summary["tests"]) == set(summary["models"]) - {best, "knn"}


def test_ensembles_are_scored_like_a_backbone_from_hand_computed_means(summary):
    frames = [predictions(name, 1.0 + index) for index, name in enumerate(BACKBONES)]
    columns = [f"prob_{name}" for name in CLASSES]
    labels = frames[0]["label_index"].to_numpy()
    mean = sum(frame[columns].to_numpy() for frame in frames) / len(frames)
    expected = headline_metrics(labels, mean)
    row = summary["models"]["ensemble_mean"]
    assert row["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert row["qwk"] == pytest.approx(cohen_kappa_score(labels, mean.argmax(axis=1), weights="quadratic"))
    weights = np.exp([-VAL_LOSSES[name] for name in BACKBONES])
    weighted = sum(w * frame[columns].to_numpy() for w, frame in zip(weights / weights.sum(), frames))
    assert summary["models"]["ensemble_val_loss"]["macro_f1"] == pytest.approx(headline_metrics(labels, weighted)["macro_f1"])
    by_loss = sorted(BACKBONES, key=VAL_LOSSES.get)
    assert [summary["ensemble_weights"][name] for name in by_loss] == sorted(summary["ensemble_weights"].values(),
                                                                            reverse=True)
    assert summary["any_dementia"]["models"]["ensemble_mean"]["sensitivity"] >= 0.9


def test_stage_reads_the_logged_inputs_and_regenerates_byte_identically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path)
    assert cli(["compare"]) == 0
    first = digests(tmp_path)
    written = json.loads((tmp_path / "metrics/summary.json").read_text())
    assert written["val_loss"] == VAL_LOSSES and written["models"][BACKBONES[0]]["training_seconds"] == 6.5
    report = (tmp_path / "reports/comparison.md").read_text()
    assert "This is the synthetic demo" in report and "`pretrained: false`" in report
    assert f"**Fine-tuning not kept** for {BACKBONES[1]}:" in report
    assert "Intervals understate" not in report and written["single_subject_classes"] == []
    assert "(../plots/compare/balanced_accuracy.png)" in report and "metrics/baselines.json` is absent" in report
    assert cli(["compare"]) == 0
    assert digests(tmp_path) == first


def test_predictions_of_other_images_or_missing_ones_stop_the_stage(tmp_path):
    frame = predictions("a", 1.0)
    with pytest.raises(PipelineError, match="other test images"):
        aligned({"a": frame, "b": frame.iloc[::-1]}, CLASSES)
    with pytest.raises(PipelineError, match="evaluate@VGG19"):
        read_predictions(tmp_path / "predictions.csv", "VGG19")


def test_a_class_with_one_test_subject_is_flagged_in_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path)
    for name in BACKBONES:  # ModerateDemented's three test subjects become one
        path = tmp_path / "plots/eval" / name / "predictions.csv"
        frame = pd.read_csv(path)
        frame.loc[frame["label"] == "ModerateDemented", "subject"] = "s03"
        frame.to_csv(path, index=False)
    assert cli(["compare"]) == 0
    assert json.loads((tmp_path / "metrics/summary.json").read_text())["single_subject_classes"] == ["ModerateDemented"]
    report = (tmp_path / "reports/comparison.md").read_text()
    assert "**Intervals understate the uncertainty**: the test split holds one subject of ModerateDemented." in report


def verdicts(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """The report's "real gap?" column, by the model the best backbone is tested against."""
    evaluations = {name: evaluation(frame, index) for index, (name, frame) in enumerate(frames.items())}
    summary = summarize(evaluations, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None,
                        parse_params(tiny_raw()))
    rows = [line.strip("|").split("|") for line in gap_table(summary).splitlines() if line.startswith("| ")]
    return {cells[0].strip(): cells[-1].strip() for cells in rows[1:]}  # rows[0] is the header


def test_a_clear_gap_is_called_real_and_a_tie_is_not():
    strong, weak = BACKBONES[:2]
    right = predictions(strong, 8.0)  # right on nearly every image
    guessing = predictions(weak, 0.0)  # right on about a quarter
    assert (right["predicted"] == right["label"]).mean() > 0.9
    assert (guessing["predicted"] == guessing["label"]).mean() < 0.5
    assert verdicts({strong: right, weak: guessing})[weak] == "yes"
    same = verdicts({strong: right, weak: right.copy()})
    assert same[weak] == "no" and set(same.values()) == {"no"}
