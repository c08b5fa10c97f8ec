"""The backbones, two ensembles of them and the classical baselines side by side, on one test split.

Reads what evaluate, the training stages and baselines wrote; writes the summary, its plot
tables, the PNG charts and the Markdown report. The reference model, which every other is tested
against, is chosen on the val split (or named beforehand): nothing here is chosen by a test score.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.analysis import charts, report
from pipeline.analysis.metrics import evaluate_predictions, headline_metrics, score_predictions, single_subject_classes
from pipeline.analysis.selection import describe_selection, overrides
from pipeline.analysis.stats import (
    any_class_but,
    ensemble,
    holm,
    loss_weights,
    mcnemar_exact,
    paired_bootstrap,
    subject_permutation_test,
)
from pipeline.core.errors import PipelineError, require_file
from pipeline.core.files import write_csv, write_json, write_text
from pipeline.core.params import Params

TABLE_METRICS = ("balanced_accuracy", "macro_f1", "roc_auc_ovr")
ORDINAL_TABLE_METRICS = ("qwk",)
ENSEMBLES = ("ensemble_mean", "ensemble_val_loss")
NOT_IN_JSON = ("binary_curves", "order", "per_class_recall", "reference_confusion")  # for the tables and charts only


def read_json(path: Path, stage: str) -> dict:
    """A JSON file another stage wrote, or a PipelineError naming that stage."""
    require_file(path, stage)
    return json.loads(path.read_text())


def read_predictions(path: Path, stage: str) -> pd.DataFrame:
    """The evaluate stage's one row per test (or val) image; a PipelineError naming `stage` when it is missing."""
    require_file(path, stage)
    return pd.read_csv(path, dtype={"path": str, "subject": str}, keep_default_na=False)


def validation_loss(path: Path, backbone: str) -> float:
    """The saved model's validation loss as finetune logged it to `path` (its best epoch's, or its start's)."""
    value = read_json(path, f"finetune@{backbone}").get("val_loss")
    if value is None:
        raise PipelineError(f"{path}: no val_loss (is the val split empty?); ensembles weigh models by it")
    return float(value)


def training_seconds(sources: dict[str, Path]) -> float:
    """The seconds logged in each stage's metrics file (stage name -> path), added up."""
    return float(sum(read_json(path, stage)["seconds"] for stage, path in sources.items()))


def aligned(predictions: dict[str, pd.DataFrame], classes: tuple[str, ...],
            split: str = "test") -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and subjects of the `split`'s images, and each model's probabilities in one row order."""
    names = list(predictions)
    first = predictions[names[0]]
    for name in names[1:]:
        if predictions[name]["path"].tolist() != first["path"].tolist():
            raise PipelineError(f"{name} was evaluated on other {split} images than {names[0]}; "
                                "rerun dvc repro evaluate")
    probabilities = {name: frame[[f"prob_{c}" for c in classes]].to_numpy() for name, frame in predictions.items()}
    return first["label_index"].to_numpy(), first["subject"].to_numpy(), probabilities


def by_fold(predictions: dict[str, pd.DataFrame]) -> list[dict[str, pd.DataFrame]]:
    """Each fold's predictions apart, by their `fold` column (compare adds it; without one, a single split)."""
    first = next(iter(predictions.values()))
    if "fold" not in first:
        return [predictions]
    return [{name: frame[frame["fold"] == fold] for name, frame in predictions.items()}
            for fold in sorted(first["fold"].unique())]


def ensemble_val(val_folds: list[tuple], members: list[str], mix: np.ndarray | None, ordinal: bool) -> dict | None:
    """An ensemble's val headline metrics: each fold's (`aligned` val predictions) averaged over the folds, as a
    backbone's val is; None when no fold has val images."""
    scores = [headline_metrics(labels, ensemble([probabilities[member] for member in members], mix), ordinal=ordinal)
              for labels, _, probabilities in val_folds if len(labels)]
    if not scores:
        return None
    per_metric = {key: [score[key] for score in scores] for key in scores[0]}
    return {key: None if None in values else float(np.mean(values)) for key, values in per_metric.items()}


def pooled_evaluation(folds: list[dict], predictions: list[pd.DataFrame], classes: tuple[str, ...], resamples: int,
                      seed: int, ordinal: bool) -> dict:
    """One backbone's record over k folds (each fold's evaluate record and test predictions): the scores and subject
    intervals of the out-of-fold test predictions pooled (every subject tested once); as val balanced accuracy, the
    mean of the folds' (a subject is in several folds' val, so pooled val is no sample of subjects); fold 0's model's
    size and latency; and each fold's test and val balanced accuracy under `per_fold`."""
    pooled = pd.concat(predictions, ignore_index=True)
    repeated = pooled["path"].duplicated()
    if repeated.any():
        raise PipelineError(f"{pooled['path'][repeated].iloc[0]} is in the test split of two folds: rerun dvc repro "
                            "split and the fold stages")
    val = [record["val"]["balanced_accuracy"] if record.get("val") else None for record in folds]
    return {
        **{key: folds[0][key] for key in ("params", "size_mb", "latency_ms", "pretrained")},
        **evaluate_predictions(pooled, classes, resamples, seed, ordinal=ordinal),
        "fine_tuning_kept": all(record["fine_tuning_kept"] for record in folds),
        "val": None if None in val else {"balanced_accuracy": float(np.mean(val)),
                                         "images": sum(record["val"]["images"] for record in folds),
                                         "subjects": sum(record["val"]["subjects"] for record in folds)},
        "per_fold": [{"test_balanced_accuracy": record["balanced_accuracy"], "val_balanced_accuracy": score,
                      "test_subjects": record["test_subjects"]} for record, score in zip(folds, val)],
    }


def fold_spread(evaluations: dict[str, dict]) -> dict:
    """Each backbone's test balanced accuracy per fold, their mean and standard deviation (ddof 1) over folds."""
    spread = {}
    for name, record in evaluations.items():
        scores = [fold["test_balanced_accuracy"] for fold in record["per_fold"]]
        spread[name] = {"per_fold": scores, "mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1))}
    return spread


def table_metrics(ordinal: bool) -> tuple[str, ...]:
    """The metrics of the comparison table: QWK too when the classes are ordinal."""
    return TABLE_METRICS + ORDINAL_TABLE_METRICS if ordinal else TABLE_METRICS


def model_row(name: str, kind: str, record: dict, seconds: float | None, metrics: tuple[str, ...]) -> dict:
    """One table row: the val balanced accuracy, headline test `metrics` with their intervals, size, latency,
    training time."""
    row = {"model": name, "kind": kind, "val_balanced_accuracy": (record.get("val") or {}).get("balanced_accuracy"),
           "accuracy": record.get("accuracy")}
    for metric in metrics:
        interval = (record.get("ci95") or {}).get(metric) or {}
        row.update({metric: record.get(metric), f"{metric}_low": interval.get("low"),
                    f"{metric}_high": interval.get("high")})
    latency = record.get("latency_ms") or {}
    row.update(params=record.get("params"), size_mb=record.get("size_mb"), latency_ms=latency.get("batch_1"),
               latency_ms_batch_32=latency.get("batch_32"), training_seconds=seconds,
               pretrained=record.get("pretrained"), fine_tuning_kept=record.get("fine_tuning_kept"))
    return row


def ensemble_record(members: list[dict], scores: dict) -> dict:
    """An ensemble's record: its own scores; parameters, size and latency of all its members together."""
    return {
        **scores,
        "params": sum(member["params"] for member in members),
        "size_mb": sum(member["size_mb"] for member in members),
        "latency_ms": {key: sum(member["latency_ms"][key] for member in members) for key in members[0]["latency_ms"]},
        "pretrained": all(member["pretrained"] for member in members),
    }


def baseline_rows(baselines: dict, metrics: tuple[str, ...]) -> list[dict]:
    """Rows of the classical baselines' test scores (no intervals, latency or size): on the backbone's features, then
    on the pixels (named `<model>_pixels`)."""
    kinds = {"": f"baseline ({baselines['backbone']} features)", "_pixels": f"baseline ({pixels_label(baselines)})"}
    models = {"": baselines["models"], "_pixels": baselines["pixels"]["models"]}
    return [model_row(name + suffix, kind, scores["test"], None, metrics)
            for suffix, kind in kinds.items() for name, scores in sorted(models[suffix].items())]


def pixels_label(baselines: dict) -> str:
    """What the pixel baselines read, e.g. 'pixels 16x16 gray'."""
    size, channels = baselines["pixels"]["size"], baselines["pixels"]["channels"]
    return f"pixels {size}x{size} {'gray' if channels == 1 else 'RGB'}"


def baseline_summary(baselines: dict) -> dict:
    """What the report says of the baselines: their inputs, folds and notes, each model's mean CV balanced accuracy
    on both inputs, and the reductions."""
    return {
        "features": baselines["backbone"],
        "pixels": pixels_label(baselines),
        "folds": baselines["folds"],
        "folds_asked": baselines["folds_asked"],
        "notes": baselines["notes"],
        "cv": {name: {"features": scores["cv"]["balanced_accuracy"],
                      "pixels": baselines["pixels"]["models"][name]["cv"]["balanced_accuracy"]}
               for name, scores in sorted(baselines["models"].items())},
        "reductions": baselines["reductions"],
        "fold_study": baselines.get("fold_study"),
    }


def pick_reference(evaluations: dict[str, dict], named: str) -> dict:
    """The model every other is tested against, chosen without reading a test score: the backbone `named` in
    compare.reference, the only backbone, else the highest val balanced accuracy (ties: the first in `backbones`)."""
    val = {name: (record.get("val") or {}).get("balanced_accuracy") for name, record in evaluations.items()}
    if named or len(val) == 1:
        model = named or next(iter(val))
        rule = "named in `compare.reference` before the run" if named else "the only backbone compared"
    else:
        unscored = [name for name, score in val.items() if score is None]
        if unscored:
            raise PipelineError(f"no val balanced accuracy for {', '.join(unscored)} (metrics/eval/<backbone>.json), "
                                "which the reference model is chosen on: rerun dvc repro evaluate@"
                                f"{unscored[0]}, or, when the val split is empty, name it in compare.reference")
        model = max(val, key=val.get)
        rule = "the highest val balanced accuracy among the backbones (ties: the first in `backbones`)"
    scored = evaluations[model].get("val") or {}
    return {"model": model, "rule": rule, "val_balanced_accuracy": val[model], "val_images": scored.get("images", 0),
            "val_subjects": scored.get("subjects", 0)}


def summarize(evaluations: dict[str, dict], predictions: dict[str, pd.DataFrame],
              val_predictions: dict[str, pd.DataFrame], val_losses: dict[str, float], seconds: dict[str, float],
              baselines: dict | None, *, classes: tuple[str, ...], ordinal: bool, negative_class: str,
              reference: str, resamples: int, seed: int, sensitivity: float) -> dict:
    """Every row of the comparison, the ensembles, the reference model (`pick_reference`) and the paired tests
    against it, per-class recall, and, when `negative_class` names one, the binary view "any class but it vs it"
    (its ROC at `sensitivity`)."""
    negative = negative_index(negative_class, classes)
    metrics = table_metrics(ordinal)
    backbones = list(evaluations)
    picked = pick_reference(evaluations, reference)
    labels, subjects, probabilities = aligned(predictions, classes)
    val_folds = [aligned(fold, classes, "val") for fold in by_fold(val_predictions)]
    records = dict(evaluations)
    rows = [model_row(name, "backbone", evaluations[name], seconds[name], metrics) for name in backbones]
    weights = np.zeros(0)
    if len(backbones) > 1:  # ensembles, weighted by the val losses (`val_losses` may be empty for one backbone)
        weights = loss_weights(np.array([val_losses[name] for name in backbones]))
        for name, mix in zip(ENSEMBLES, (None, weights)):
            probabilities[name] = ensemble([probabilities[member] for member in backbones], mix)
            scores = score_predictions(labels, probabilities[name], subjects, classes, resamples, seed,
                                       ordinal=ordinal)
            records[name] = {**ensemble_record(list(evaluations.values()), scores),
                             "val": ensemble_val(val_folds, backbones, mix, ordinal)}
            rows.append(model_row(name, "ensemble", records[name], sum(seconds.values()), metrics))
    if baselines:
        rows += baseline_rows(baselines, metrics)
    summary = {
        "reference": picked,
        "classes": list(classes),
        "ordinal": ordinal,
        "test_images": len(labels),
        "test_subjects": len(np.unique(subjects)),
        "single_subject_classes": single_subject_classes(labels, subjects, classes),
        "models": {row["model"]: row for row in rows},
        "order": [row["model"] for row in rows],
        "val_loss": val_losses,
        "ensemble_weights": dict(zip(backbones, weights.tolist())),
        "tests": paired_tests(picked["model"], labels, subjects, probabilities, resamples, seed),
        "baselines": baseline_summary(baselines) if baselines else None,
        "per_class_recall": per_class_recall({name: records[name] for name in probabilities}, classes),
        "reference_confusion": evaluations[picked["model"]]["confusion_matrix"],
    }
    if negative is not None:
        summary.update(binary_view(negative_class, negative, labels, probabilities, sensitivity))
        for row in rows:
            row["binary_auc"] = summary["binary"]["models"].get(row["model"], {}).get("auc")
    return summary


def add_explanations(summary: dict, explanations: dict[str, dict], grids: dict[str, Path]) -> None:
    """Put what the explain stages wrote (backbone -> metrics) into the summary, its grid's path beside each,
    and the maps' share inside the brain beside the backbone's scores where it was measured."""
    summary["explanations"] = {name: {**metrics, "grid": grids[name].as_posix()} for name, metrics in explanations.items()}
    for name, metrics in explanations.items():
        if metrics.get("attention_inside_brain") is not None:
            summary["models"][name]["attention_inside_brain"] = metrics["attention_inside_brain"]


def negative_index(negative_class: str, classes: tuple[str, ...]) -> int | None:
    """The index of the binary view's negative class; None for no binary view ("")."""
    if not negative_class:
        return None
    if negative_class not in classes:
        raise PipelineError(f"data.negative_class: {negative_class!r} is not one of the classes "
                            f"({', '.join(classes)}); name one of them, or '' for no binary view")
    return classes.index(negative_class)


def binary_view(negative_class: str, negative: int, labels: np.ndarray, probabilities: dict[str, np.ndarray],
                sensitivity: float) -> dict:
    """Each model's ROC of "any class but `negative_class` vs it": AUC and operating point, and the curves."""
    is_negative = labels == negative
    if is_negative.all() or not is_negative.any():
        raise PipelineError(f"the test split has {'only' if is_negative.all() else 'no'} images of {negative_class} "
                            "(data.negative_class): the binary view needs both it and other classes; "
                            "set data.negative_class: '' for none")
    rocs = {name: any_class_but(negative, labels, p, sensitivity) for name, p in probabilities.items()}
    return {
        "binary": {"negative_class": negative_class, "sensitivity_target": sensitivity,
                   "models": {name: {k: v for k, v in roc.items() if k not in ("fpr", "tpr")}
                              for name, roc in rocs.items()}},
        "binary_curves": {name: {"fpr": roc["fpr"].tolist(), "tpr": roc["tpr"].tolist()}
                          for name, roc in rocs.items()},
    }


def per_class_recall(records: dict[str, dict], classes: tuple[str, ...]) -> pd.DataFrame:
    """One row per class: its test images and each model's recall of it (NaN where it has no test images)."""
    first = next(iter(records.values()))["per_class"]
    table = pd.DataFrame({"class": list(classes), "test_images": [first[name]["support"] for name in classes]})
    for model, record in records.items():
        table[model] = [np.nan if record["per_class"][name]["recall"] is None else record["per_class"][name]["recall"]
                        for name in classes]
    return table


def paired_tests(reference: str, labels: np.ndarray, subjects: np.ndarray, probabilities: dict[str, np.ndarray],
                 n_resamples: int, seed: int) -> dict:
    """The reference against each other model with predictions, on balanced accuracy: the subject permutation
    test with Holm-adjusted p-values (`p_holm`, over these comparisons), the subject-paired bootstrap's interval,
    and McNemar's exact test per image (which ignores subjects: for reference only)."""
    predicted = {name: p.argmax(axis=1) for name, p in probabilities.items()}
    tests = {
        other: {
            "permutation": subject_permutation_test(labels, predicted[reference], predicted[other], subjects,
                                                    n_resamples, seed),
            "balanced_accuracy_difference": paired_bootstrap(labels, predicted[reference], predicted[other],
                                                             subjects, n_resamples, seed),
            "mcnemar_per_image": mcnemar_exact(predicted[reference] == labels, predicted[other] == labels),
        }
        for other in predicted if other != reference
    }
    for result, adjusted in zip(tests.values(), holm([result["permutation"]["p_value"] for result in tests.values()])):
        result["permutation"]["p_holm"] = adjusted
    return tests


def provenance(params: Params, archive: str, lock_path: Path, demo: bool, models: dict[str, Path]) -> dict:
    """What produced the figures: the params that matter, the archive's and `models`' hashes as dvc.lock has them."""
    locked = yaml.safe_load(lock_path.read_text())["stages"] if lock_path.is_file() else {}
    return {
        "archive": archive,
        "demo": demo,
        "archive_md5": _locked_md5(locked, "dedupe", archive),
        "model_md5": {name: _locked_md5(locked, f"evaluate@{name}", path) for name, path in models.items()},
        "params": {"seed": params.seed, "weights": params.weights, "image_size": params.image_size,
                   "batch_size": params.batch_size, "lr": params.lr, "epochs": params.epochs,
                   "fine_tune_lr": params.fine_tune_lr, "fine_tune_epochs": params.fine_tune_epochs,
                   "evaluate.bootstrap": params.evaluate.bootstrap, "compare.sensitivity": params.compare.sensitivity,
                   "compare.reference": params.compare.reference or "(val)"},
        "tune": {name: values for name in params.backbones if (values := overrides(params, name))},
        "selection": describe_selection(params),
    }


def _locked_md5(locked: dict, stage: str, path: str | Path) -> str | None:
    deps = (locked.get(stage) or {}).get("deps", [])
    return next((dep.get("md5") for dep in deps if Path(dep["path"]) == Path(path)), None)


def write_outputs(summary: dict, origin: dict, summary_path: Path, plots_dir: Path, report_path: Path) -> None:
    """The summary JSON (without the curves and per-class tables), the plot tables and PNG charts under plots_dir,
    the Markdown report. Without a binary view, a binary ROC table or chart left by an earlier run is removed."""
    write_json(summary_path, {key: value for key, value in summary.items() if key not in NOT_IN_JSON})
    table = pd.DataFrame([summary["models"][name] for name in summary["order"]])
    write_csv(plots_dir / "summary.csv", table, float_format="%.6g")
    tables = {"per_class_recall": plots_dir / "per_class_recall.csv", "binary_roc": plots_dir / "binary_roc.csv",
              "single_subject_classes": plots_dir / "single_subject_classes.csv"}
    write_csv(tables["per_class_recall"], summary["per_class_recall"], float_format="%.6g")
    write_csv(tables["single_subject_classes"], pd.DataFrame({"class": summary["single_subject_classes"]}))
    if "binary" in summary:
        curves = summary["binary_curves"]
        roc = pd.concat([pd.DataFrame({"model": name, **curve}) for name, curve in curves.items()], ignore_index=True)
        write_csv(tables["binary_roc"], roc, float_format="%.6g")
    else:
        for stale in (tables.pop("binary_roc"), plots_dir / "binary_roc.png"):
            stale.unlink(missing_ok=True)
    figures = charts.draw_all(table, summary, plots_dir)
    write_text(report_path, report.render(summary, table, origin, figures, tables, report_path.parent))
