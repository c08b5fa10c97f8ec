"""The compare stage on small synthetic evaluations: ensembles, rows, paired tests, and byte-identical outputs."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import cohen_kappa_score, recall_score, roc_auc_score

from pipeline.__main__ import main as cli
from pipeline.analysis.charts import confusion_chart
from pipeline.analysis.comparison import (
    aligned,
    fold_spread,
    pooled_evaluation,
    read_predictions,
    summarize,
    write_outputs,
)
from pipeline.analysis.metrics import headline_metrics, score_predictions, validation_scores
from pipeline.analysis.report import folds as fold_section
from pipeline.analysis.report import tests as gap_table
from pipeline.core.errors import PipelineError
from tests.conftest import ROOT, raw_params

BACKBONES = tuple(raw_params()["backbones"])  # other sections may name them (audit.backbone)
CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
VAL_LOSSES = {name: 1.0 + (index % 3) / 4 for index, name in enumerate(BACKBONES)}
RESAMPLES = 10
OUTPUTS = ("metrics/summary.json", "reports/comparison.md", "plots/compare/summary.csv",
           "plots/compare/binary_roc.csv", "plots/compare/balanced_accuracy.png",
           "plots/compare/accuracy_latency.png", "plots/compare/accuracy_size.png",
           "plots/compare/binary_roc.png", "plots/compare/per_class_recall.csv", "plots/compare/confusion.png")
SETTING = {"classes": CLASSES, "ordinal": True, "negative_class": "NonDemented", "reference": "", "resamples": RESAMPLES,
           "seed": 42, "sensitivity": 0.9}  # the 4 ordinal classes with NonDemented as the binary view's negative


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


def evaluation(frame: pd.DataFrame, index: int, classes: tuple[str, ...] = CLASSES, ordinal: bool = True,
               val_frame: pd.DataFrame | None = None) -> dict:
    """A metrics/eval/<backbone>.json as evaluate writes it (the fields compare reads); val scored on `val_frame`
    (default: the test frame)."""
    labels, subjects, probabilities = aligned({"m": frame}, classes)
    return {**score_predictions(labels, probabilities["m"], subjects, classes, RESAMPLES, 42, ordinal=ordinal),
            "val": validation_scores(frame if val_frame is None else val_frame, classes, RESAMPLES, 42,
                                     ordinal=ordinal),
            "params": 1000 * (index + 1), "size_mb": 2.0 * (index + 1), "pretrained": False,
            "fine_tuning_kept": index != 1,
            "latency_ms": {"batch_1": 1.5 * (index + 1), "batch_32": 0.5 * (index + 1)}}


def write_run(root: Path, **data) -> None:
    """The inputs compare reads, laid out under `root` as the earlier stages leave them; `data` overrides
    params.yaml's data section (ordinal, negative_class)."""
    raw = tiny_raw()
    raw["data"].update(data)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "metrics/split.json").write_text(json.dumps({"shared_subjects": 0, "shared_sources": 0}))
    for index, name in enumerate(BACKBONES):
        frame = predictions(name, 1.0 + index)
        (root / "plots/eval" / name).mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / "plots/eval" / name / "predictions.csv", index=False)
        frame.to_csv(root / "plots/eval" / name / "val_predictions.csv", index=False)
        (root / "metrics/eval").mkdir(parents=True, exist_ok=True)
        record = evaluation(frame, index, ordinal=raw["data"]["ordinal"])
        (root / "metrics/eval" / f"{name}.json").write_text(json.dumps(record))
        (root / "metrics/features").mkdir(parents=True, exist_ok=True)
        (root / "metrics/features" / f"{name}.json").write_text(json.dumps({"seconds": 1.0}))
        finetune = {"seconds": 3.5, "val_loss": VAL_LOSSES[name]}
        for stage, summary in (("train", {"seconds": 2.0}), ("finetune", finetune)):
            live = root / "dvclive" / stage / name
            live.mkdir(parents=True, exist_ok=True)
            (live / "metrics.json").write_text(json.dumps(summary))


def digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in OUTPUTS}


RARE_CLASS_NOTE = "baselines.folds = 5, but class ModerateDemented has as few as 2 subjects in train and val"


def baseline_scores(test: float, cv: float) -> dict:
    """A model's entry in metrics/baselines.json with these test and mean CV balanced accuracies."""
    return {"cv": {"balanced_accuracy": cv, "balanced_accuracy_std": 0.05, "macro_f1": cv},
            "test": {"accuracy": test + 0.05, "balanced_accuracy": test, "macro_f1": test - 0.05, "qwk": 0.3}}


@pytest.fixture(scope="module")
def summary() -> dict:
    frames = {name: predictions(name, 1.0 + index) for index, name in enumerate(BACKBONES)}
    baselines = {"backbone": BACKBONES[0], "folds": 2, "folds_asked": 5, "notes": [RARE_CLASS_NOTE],
                 "models": {"knn": baseline_scores(0.45, 0.33)},
                 "pixels": {"size": 16, "channels": 1, "models": {"knn": baseline_scores(0.61, 0.55)}},
                 "reductions": {"input": "pixels", "code_size": 1.5, "models": {
                     "one_vs_one_linear_svm": {**baseline_scores(0.7, 0.66), "binary_models": 6, "fit_seconds": 0.25}}}}
    return summarize({name: evaluation(frame, index) for index, (name, frame) in enumerate(frames.items())}, frames,
                     frames, VAL_LOSSES, dict.fromkeys(BACKBONES, 6.5), baselines, **SETTING)


def test_rows_hold_backbones_then_ensembles_then_baselines(summary):
    assert list(summary["models"]) == [*BACKBONES, "ensemble_mean", "ensemble_val_loss", "knn", "knn_pixels"]
    baseline = summary["models"]["knn"]
    assert baseline["kind"] == f"baseline ({BACKBONES[0]} features)" and baseline["balanced_accuracy"] == 0.45
    on_pixels = summary["models"]["knn_pixels"]
    assert on_pixels["kind"] == "baseline (pixels 16x16 gray)" and on_pixels["balanced_accuracy"] == 0.61
    assert baseline["latency_ms"] is None and baseline["balanced_accuracy_low"] is None
    mean = summary["models"]["ensemble_mean"]
    n = len(BACKBONES)
    assert mean["params"] == 1000 * n * (n + 1) / 2 and mean["latency_ms"] == pytest.approx(1.5 * n * (n + 1) / 2)
    assert mean["training_seconds"] == 6.5 * n
    assert mean["balanced_accuracy_low"] <= mean["balanced_accuracy"] <= mean["balanced_accuracy_high"]
    reference = summary["reference"]["model"]
    assert set(summary["tests"]) == set(summary["models"]) - {reference, "knn", "knn_pixels"}


def test_ensembles_are_scored_like_a_backbone_from_hand_computed_means(summary):
    frames = [predictions(name, 1.0 + index) for index, name in enumerate(BACKBONES)]
    columns = [f"prob_{name}" for name in CLASSES]
    labels = frames[0]["label_index"].to_numpy()
    mean = sum(frame[columns].to_numpy() for frame in frames) / len(frames)
    expected = headline_metrics(labels, mean, ordinal=True)
    row = summary["models"]["ensemble_mean"]
    assert row["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert row["qwk"] == pytest.approx(cohen_kappa_score(labels, mean.argmax(axis=1), weights="quadratic"))
    weights = np.exp([-VAL_LOSSES[name] for name in BACKBONES])
    weighted = sum(w * frame[columns].to_numpy() for w, frame in zip(weights / weights.sum(), frames))
    assert summary["models"]["ensemble_val_loss"]["macro_f1"] == pytest.approx(headline_metrics(labels, weighted, ordinal=True)["macro_f1"])
    by_loss = sorted(BACKBONES, key=VAL_LOSSES.get)
    assert [summary["ensemble_weights"][name] for name in by_loss] == sorted(summary["ensemble_weights"].values(),
                                                                            reverse=True)
    assert summary["binary"]["models"]["ensemble_mean"]["sensitivity"] >= 0.9


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
        read_predictions(tmp_path / "predictions.csv", "evaluate@VGG19")


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
    """The report's "real gap?" column, by the model the reference (the first backbone) is tested against."""
    evaluations = {name: evaluation(frame, index) for index, (name, frame) in enumerate(frames.items())}
    summary = summarize(evaluations, frames, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None,
                        **{**SETTING, "reference": next(iter(frames))})
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


FLOWERS = tuple(f"flower_{number:03d}" for number in range(102))  # unordered, like Oxford Flowers 102
UNORDERED = {**SETTING, "classes": FLOWERS, "ordinal": False, "negative_class": ""}


def many_class_predictions(backbone: str, strength: float, classes: tuple[str, ...]) -> pd.DataFrame:
    """predictions.csv for 4 subjects holding one image of every class, so every subject resample holds them all."""
    n = len(classes)
    rng = np.random.default_rng(len(backbone))
    labels = np.tile(np.arange(n), 4)
    logits = rng.normal(size=(len(labels), n)) + strength * np.eye(n)[labels] * rng.random((len(labels), 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"path": [f"img{i:03d}.jpg" for i in range(len(labels))],
                          "subject": np.repeat([f"s{i}" for i in range(4)], n),
                          "label": np.array(classes)[labels], "label_index": labels,
                          "predicted": np.array(classes)[probabilities.argmax(axis=1)]})
    return pd.concat([frame, pd.DataFrame(probabilities, columns=[f"prob_{name}" for name in classes])], axis=1)


def written(summary: dict, root: Path) -> dict[str, Path]:
    """write_outputs of `summary` under `root`: the paths it wrote, by name relative to root."""
    origin = {"demo": False, "archive": "data/raw/x", "archive_md5": None, "params": {"weights": "none"},
              "model_md5": {}, "tune": {}, "selection": ""}
    write_outputs(summary, origin, root / "metrics/summary.json", root / "plots/compare", root / "reports/comparison.md")
    return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}


def section(report: str, heading: str) -> str:
    """One `## heading` section of the report, up to the next."""
    return report.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows in `text`."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return rows[2:]


@pytest.fixture(scope="module")
def unordered(tmp_path_factory) -> tuple[dict, dict[str, Path], dict[str, pd.DataFrame]]:
    """102 unordered classes and no negative class: the summary, the files written, the predictions."""
    frames = {name: many_class_predictions(name, 6.0 + index, FLOWERS) for index, name in enumerate(BACKBONES[:2])}
    evaluations = {name: evaluation(frame, index, FLOWERS, ordinal=False) for index, (name, frame)
                   in enumerate(frames.items())}
    summary = summarize(evaluations, frames, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None, **UNORDERED)
    return summary, written(summary, tmp_path_factory.mktemp("unordered")), frames


def test_unordered_classes_without_a_negative_class_have_no_qwk_and_no_binary_view(unordered):
    summary, files, _ = unordered
    assert set(files) == {"metrics/summary.json", "reports/comparison.md", "plots/compare/summary.csv",
                          "plots/compare/per_class_recall.csv", "plots/compare/balanced_accuracy.png",
                          "plots/compare/accuracy_latency.png", "plots/compare/accuracy_size.png",
                          "plots/compare/confusion.png", "plots/compare/single_subject_classes.csv"}
    text = {name: path.read_text() for name, path in files.items() if not name.endswith(".png")}
    assert not [name for name, content in text.items() if "qwk" in content.lower()]
    assert not [name for name, content in text.items() if "binary" in content]
    report = text["reports/comparison.md"]
    assert "Any class but" not in report and "(unordered; named in `" in report
    assert "flower_050" not in report.split("## Results")[0]  # 102 names are not listed in the setting line
    assert "binary" not in summary and json.loads(text["metrics/summary.json"])["ordinal"] is False


def test_102_classes_show_the_worst_and_best_recall_and_write_every_class(unordered):
    summary, files, frames = unordered
    reference = summary["reference"]["model"]  # the per-class table sorts by the reference's recall
    recall = pd.read_csv(files["plots/compare/per_class_recall.csv"])
    assert recall["class"].tolist() == list(FLOWERS) and (recall["test_images"] == 4).all()
    frame = frames[reference]
    expected = recall_score(frame["label_index"], frame["predicted"].map(FLOWERS.index), average=None)
    np.testing.assert_allclose(recall[reference], expected, atol=1e-6)
    assert set(recall.columns) == {"class", "test_images", *frames, "ensemble_mean", "ensemble_val_loss"}
    rows = table_rows(section(files["reports/comparison.md"].read_text(), "Per class"))
    assert len(rows) == 11 and rows[5][0] == "(92 classes between)"
    shown = [row[0] for row in rows[:5] + rows[6:]]
    by_class = recall.set_index("class")[reference]
    values = by_class[shown].to_numpy()
    others = by_class.drop(shown)
    assert (np.diff(values) >= 0).all() and values[4] <= others.min() and values[5] >= others.max()
    assert [float(row[2 + recall.columns[2:].tolist().index(reference)]) for row in rows[:5] + rows[6:]] == \
        pytest.approx(values, abs=5e-4)


def test_four_ordinal_classes_list_every_class_sorted_and_keep_qwk_and_the_binary_view(summary, tmp_path):
    files = written(summary, tmp_path)
    report = files["reports/comparison.md"].read_text()
    rows = table_rows(section(report, "Per class"))
    recall = pd.read_csv(files["plots/compare/per_class_recall.csv"]).set_index("class")[summary["reference"]["model"]]
    assert sorted(row[0] for row in rows) == sorted(CLASSES)
    assert recall[[row[0] for row in rows]].is_monotonic_increasing
    assert "| QWK | binary AUC |" in report and "## Any class but NonDemented vs NonDemented" in report
    assert f"classes {', '.join(CLASSES)} (ordinal)" in report
    assert {"plots/compare/binary_roc.csv", "plots/compare/binary_roc.png"} <= set(files)


def test_the_report_sets_the_baselines_on_pixels_beside_those_on_features_and_tables_the_reductions(summary, tmp_path):
    report = written(summary, tmp_path)["reports/comparison.md"].read_text()
    results = {row[0]: row[1] for row in table_rows(section(report, "Results"))}
    assert results["knn"] == f"baseline ({BACKBONES[0]} features)" and results["knn_pixels"] == \
        "baseline (pixels 16x16 gray)"
    baselines = section(report, "Classical baselines")
    assert f"> **Fewer folds or unscored classes**: {RARE_CLASS_NOTE}." in baselines and "over 2 folds" in baselines
    assert not re.search(r"> \*\*[^*]*:\*\*", report)  # warning titles (the web page's folded lines) end with no colon
    tables = baselines.split("### Multi-class reductions to binary models")
    assert table_rows(tables[0]) == [["knn", "0.330", "0.550"]]
    assert f"| model | CV on {BACKBONES[0]} features | CV on pixels 16x16 gray |" in tables[0]
    assert table_rows(tables[1]) == [["one_vs_one_linear_svm", "6", "0.660 ± 0.050", "0.700", "0.25"]]
    assert "on the pixels 16x16 gray" in tables[1]


def test_the_binary_view_is_any_class_but_the_named_negative_one(tmp_path):
    frames = {name: predictions(name, 1.0 + index) for index, name in enumerate(BACKBONES[:2])}
    evaluations = {name: evaluation(frame, index) for index, (name, frame) in enumerate(frames.items())}
    summary = summarize(evaluations, frames, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None,
                        **{**SETTING, "negative_class": "MildDemented"})
    labels, _, probabilities = aligned(frames, CLASSES)
    for name, p in probabilities.items():
        assert summary["binary"]["models"][name]["auc"] == pytest.approx(roc_auc_score(labels != 2, 1 - p[:, 2]))
        assert summary["models"][name]["binary_auc"] == summary["binary"]["models"][name]["auc"]
    assert summary["binary"]["negative_class"] == "MildDemented"
    report = written(summary, tmp_path)["reports/comparison.md"].read_text()
    assert "## Any class but MildDemented vs MildDemented" in report and "score 1 - P(MildDemented)" in report


def test_a_negative_class_that_is_unknown_or_absent_from_test_stops_the_comparison():
    frames = {name: predictions(name, 1.0) for name in BACKBONES[:2]}
    evaluations = {name: evaluation(frame, 0) for name, frame in frames.items()}
    args = (evaluations, frames, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None)
    with pytest.raises(PipelineError, match="data.negative_class: 'Healthy' is not one of the classes"):
        summarize(*args, **{**SETTING, "negative_class": "Healthy"})
    shifted = {name: frame.assign(label_index=frame["label_index"] % 3) for name, frame in frames.items()}
    with pytest.raises(PipelineError, match="the test split has no images of ModerateDemented"):
        summarize(evaluations, shifted, *args[2:], **{**SETTING, "negative_class": "ModerateDemented"})


def test_stage_follows_ordinal_and_negative_class_and_drops_a_stale_binary_view(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path)
    assert cli(["compare"]) == 0
    assert (tmp_path / "plots/compare/binary_roc.png").is_file()
    write_run(tmp_path, ordinal=False, negative_class="")
    assert cli(["compare"]) == 0
    report = (tmp_path / "reports/comparison.md").read_text()
    assert "QWK" not in report and "binary" not in report and "(unordered)" in report
    assert not list((tmp_path / "plots/compare").glob("binary_roc.*"))
    assert "qwk" not in (tmp_path / "metrics/summary.json").read_text()


def test_dvc_yaml_declares_every_file_compare_writes(tmp_path, monkeypatch):
    """An undeclared file is left stale when DVC restores the stage from its run-cache."""
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path)
    before = {path for path in tmp_path.rglob("*") if path.is_file()}
    assert cli(["compare"]) == 0
    new = {path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file()} - \
        {path.relative_to(tmp_path) for path in before}
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["compare"]
    declared = [Path(entry if isinstance(entry, str) else next(iter(entry)))
                for kind in ("outs", "metrics", "plots") for entry in stage.get(kind, [])]
    assert new and not [path for path in new if not any(path == out or out in path.parents for out in declared)]


def test_the_confusion_chart_counts_few_classes_and_thins_many():
    few = confusion_chart([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 4, 0], [0, 1, 0, 2]], list(CLASSES), "m")
    axes = few.axes[0]
    assert [text.get_text() for text in axes.texts] == ["5", "1", "0", "0", "2", "3", "1", "0", "0", "0", "4", "0",
                                                        "0", "1", "0", "2"]
    assert [label.get_text() for label in axes.get_xticklabels()] == list(CLASSES)
    counts = np.diag(np.arange(1, 103)).tolist()
    many = confusion_chart(counts, list(FLOWERS), "m").axes[0]
    names = [label.get_text() for label in many.get_yticklabels()]
    assert not many.texts and 10 <= len(names) <= 21 and names[:2] == ["0: flower_000", "6: flower_006"]
    np.testing.assert_array_equal(many.images[0].get_array(), np.eye(102))  # each row's share of its true class


def test_a_class_without_test_images_is_named_not_ranked(tmp_path):
    frames = {name: predictions(name, 1.0 + index).query("label_index < 3").reset_index(drop=True)
              for index, name in enumerate(BACKBONES[:2])}
    evaluations = {name: evaluation(frame, index) for index, (name, frame) in enumerate(frames.items())}
    summary = summarize(evaluations, frames, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None, **SETTING)
    files = written(summary, tmp_path)
    recall = pd.read_csv(files["plots/compare/per_class_recall.csv"])
    assert recall["test_images"].tolist()[3] == 0 and recall.iloc[3, 2:].isna().all()
    part = section(files["reports/comparison.md"].read_text(), "Per class")
    assert [row[0] for row in table_rows(part)] != [] and "ModerateDemented" not in {row[0] for row in table_rows(part)}
    assert "No test images of ModerateDemented: no recall." in part


@pytest.mark.parametrize("dropped", [False, True])
def test_images_shared_by_the_source_s_own_splits_are_named_at_the_top_of_the_report(tmp_path, monkeypatch, dropped):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path)
    shared = {"images": 2, "dropped": dropped, "examples": ["test/000007.jpg", "validation/000003.jpg"]}
    Path("metrics/split.json").write_text(json.dumps({"own_splits": True, "shared_images": shared}))
    assert cli(["compare"]) == 0
    report = (tmp_path / "reports/comparison.md").read_text()
    warning = report.split("## ", 1)[0]  # before the first section: the warnings
    assert "**The source's own splits share 2 image(s)**" in warning
    assert "`test/000007.jpg`, `validation/000003.jpg`" in warning
    assert ("left out of the later split" in warning) == dropped and ("partly leaked" in warning) != dropped


def test_the_reference_is_chosen_on_val_where_val_and_test_disagree(tmp_path):
    """The first backbone leads on test, the second on val: the pick follows val, and no key calls a model best."""
    first, second = BACKBONES[:2]
    test = {first: predictions(first, 8.0), second: predictions(second, 0.5)}
    val = {first: predictions(first, 0.5), second: predictions(second, 8.0)}
    evaluations = {name: evaluation(test[name], index, val_frame=val[name]) for index, name in enumerate(test)}
    assert evaluations[first]["balanced_accuracy"] > evaluations[second]["balanced_accuracy"]
    summary = summarize(evaluations, test, val, dict.fromkeys(test, 1.0), dict.fromkeys(test, 1.0), None, **SETTING)
    assert summary["reference"]["model"] == second
    assert summary["reference"]["val_balanced_accuracy"] == evaluations[second]["val"]["balanced_accuracy"]
    assert set(summary["tests"]) == {first, "ensemble_mean", "ensemble_val_loss"}
    files = written(summary, tmp_path)
    assert "best" not in json.loads(files["metrics/summary.json"].read_text())
    report = files["reports/comparison.md"].read_text()
    assert report.split("\n")[2].startswith(f"**Reference model: {second}**, chosen before the test split was read: "
                                            "the highest val balanced accuracy")
    assert f"## Does any model differ from {second}?" in report
    named = summarize(evaluations, test, val, dict.fromkeys(test, 1.0), dict.fromkeys(test, 1.0), None,
                      **{**SETTING, "reference": first})
    assert named["reference"]["model"] == first and "compare.reference" in named["reference"]["rule"]


def test_ensembles_are_scored_on_val_like_the_backbones(summary):
    frames = [predictions(name, 1.0 + index) for index, name in enumerate(BACKBONES)]
    columns = [f"prob_{name}" for name in CLASSES]
    mean = sum(frame[columns].to_numpy() for frame in frames) / len(frames)
    labels = frames[0]["label_index"].to_numpy()
    assert summary["models"]["ensemble_mean"]["val_balanced_accuracy"] == pytest.approx(
        headline_metrics(labels, mean, ordinal=True)["balanced_accuracy"])
    assert summary["models"][BACKBONES[0]]["val_balanced_accuracy"] is not None


def test_over_folds_the_ensembles_val_is_each_fold_s_averaged_as_the_backbones_is():
    """A subject is in several folds' val: the ensembles' val is scored fold by fold, then averaged."""
    names = BACKBONES[:2]
    folds = [{name: predictions(name, 0.2 + index).assign(fold=0) for index, name in enumerate(names)},
             {name: predictions(name, 6.0 + index).head(12).assign(fold=1) for index, name in enumerate(names)}]
    val = {name: pd.concat([fold[name] for fold in folds], ignore_index=True) for name in names}
    test = {name: predictions(name, 1.0) for name in names}
    evaluations = {name: evaluation(test[name], index) for index, name in enumerate(names)}
    summary = summarize(evaluations, test, val, dict.fromkeys(names, 1.0), dict.fromkeys(names, 1.0), None, **SETTING)
    columns = [f"prob_{name}" for name in CLASSES]

    def mean_ensemble_score(frames: dict[str, pd.DataFrame]) -> float:
        mean = sum(frame[columns].to_numpy() for frame in frames.values()) / len(frames)
        return headline_metrics(frames[names[0]]["label_index"].to_numpy(), mean, ordinal=True)["balanced_accuracy"]

    per_fold = np.mean([mean_ensemble_score(fold) for fold in folds])
    assert summary["models"]["ensemble_mean"]["val_balanced_accuracy"] == pytest.approx(per_fold)
    assert per_fold != pytest.approx(mean_ensemble_score(val))  # pooling the folds' val would score otherwise


def test_over_folds_the_report_says_the_baseline_rows_are_fold_0_s_test_alone(summary):
    folded = {**summary, "folds": {"k": 3, "models": {name: {"per_fold": [0.3, 0.4, 0.5], "mean": 0.4, "std": 0.1}
                                                      for name in BACKBONES}}}
    assert "scored on fold 0's test split alone" in fold_section(folded)
    assert "fold 0's test split alone" not in fold_section({**folded, "baselines": None})


def test_an_evaluation_without_val_scores_stops_the_comparison():
    frames = {name: predictions(name, 1.0) for name in BACKBONES[:2]}
    evaluations = {name: evaluation(frame, 0) for name, frame in frames.items()}
    del evaluations[BACKBONES[1]]["val"]
    with pytest.raises(PipelineError, match=f"no val balanced accuracy for {BACKBONES[1]}.*compare.reference"):
        summarize(evaluations, frames, frames, dict.fromkeys(frames, 1.0), dict.fromkeys(frames, 1.0), None, **SETTING)


def test_the_paired_tests_are_holm_adjusted_over_the_comparisons(summary):
    raw = [result["permutation"]["p_value"] for result in summary["tests"].values()]
    adjusted = [result["permutation"]["p_holm"] for result in summary["tests"].values()]
    order = np.argsort(raw)
    expected = np.minimum(1, np.maximum.accumulate(np.sort(raw) * (len(raw) - np.arange(len(raw)))))
    np.testing.assert_allclose(np.array(adjusted)[order], expected)
    assert all("mcnemar_per_image" in result for result in summary["tests"].values())


@pytest.mark.parametrize("source", ["folder", "tfds:oxford_flowers102"])
def test_a_run_of_another_source_is_never_called_the_synthetic_demo(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path, source=source)  # data.archive is still data/raw/demo, as the committed params have it
    assert cli(["compare"]) == 0
    report = (tmp_path / "reports/comparison.md").read_text()
    assert "synthetic demo" not in report and "`pretrained: false`" in report


def test_a_warning_about_many_classes_names_a_few_and_writes_them_all_to_a_csv(unordered, tmp_path):
    summary, _, _ = unordered
    files = written({**summary, "single_subject_classes": list(FLOWERS[:40])}, tmp_path)
    report = files["reports/comparison.md"].read_text()
    assert ("the test split holds one subject of 40 classes (flower_000, flower_001, flower_002, flower_003, "
            "flower_004, ...; all in `") in report and "flower_005" not in report.split("## ")[1]
    assert pd.read_csv(files["plots/compare/single_subject_classes.csv"])["class"].tolist() == list(FLOWERS[:40])
    twelve = written({**summary, "single_subject_classes": list(FLOWERS[:12])}, tmp_path / "twelve")
    assert f"one subject of {', '.join(FLOWERS[:12])}." in twelve["reports/comparison.md"].read_text()


def test_folds_pool_their_test_predictions_and_average_their_val_scores():
    frame = predictions("VGG19", 1.0)
    halves = [frame.iloc[:18], frame.iloc[18:]]  # subjects s00-s05 tested in fold 0, s06-s11 in fold 1
    folds = [evaluation(half, 0) for half in halves]
    pooled = pooled_evaluation(folds, halves, CLASSES, RESAMPLES, 42, ordinal=True)
    assert pooled["test_images"] == 36 and pooled["test_subjects"] == 12
    assert pooled["balanced_accuracy"] == evaluation(frame, 0)["balanced_accuracy"]
    assert pooled["val"]["balanced_accuracy"] == pytest.approx(np.mean([fold["val"]["balanced_accuracy"]
                                                                        for fold in folds]))
    assert [fold["test_balanced_accuracy"] for fold in pooled["per_fold"]] == [fold["balanced_accuracy"]
                                                                               for fold in folds]
    spread = fold_spread({"VGG19": pooled})["VGG19"]
    assert spread["std"] == pytest.approx(np.std(spread["per_fold"], ddof=1))
    with pytest.raises(PipelineError, match="img00.jpg is in the test split of two folds"):
        pooled_evaluation(folds, [halves[0], frame], CLASSES, RESAMPLES, 42, ordinal=True)
