"""The backbones, two ensembles of them and the classical baselines side by side, on one test split.

Reads what evaluate, the training stages and baselines wrote; writes the summary, its plot
tables, the PNG charts and the Markdown report.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.analysis import charts, report
from pipeline.analysis.metrics import score_predictions, single_subject_classes
from pipeline.analysis.stats import any_dementia, ensemble, loss_weights, mcnemar_exact, paired_bootstrap
from pipeline.core.errors import PipelineError
from pipeline.core.files import write_csv, write_json, write_text
from pipeline.core.params import Params

TABLE_METRICS = ("balanced_accuracy", "macro_f1", "roc_auc_ovr", "qwk")
ENSEMBLES = ("ensemble_mean", "ensemble_val_loss")


def read_json(path: Path, stage: str) -> dict:
    """A JSON file another stage wrote, or a PipelineError naming that stage."""
    if not path.is_file():
        raise PipelineError(f"{path} not found; run dvc repro {stage} first")
    return json.loads(path.read_text())


def read_predictions(path: Path, backbone: str) -> pd.DataFrame:
    """The evaluate stage's one row per test image."""
    if not path.is_file():
        raise PipelineError(f"{path} not found; run dvc repro evaluate@{backbone} first")
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


def aligned(predictions: dict[str, pd.DataFrame], classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and subjects of the test images, and each model's probabilities in one row order."""
    names = list(predictions)
    first = predictions[names[0]]
    for name in names[1:]:
        if predictions[name]["path"].tolist() != first["path"].tolist():
            raise PipelineError(f"{name} was evaluated on other test images than {names[0]}; rerun dvc repro evaluate")
    probabilities = {name: frame[[f"prob_{c}" for c in classes]].to_numpy() for name, frame in predictions.items()}
    return first["label_index"].to_numpy(), first["subject"].to_numpy(), probabilities


def model_row(name: str, kind: str, record: dict, seconds: float | None) -> dict:
    """One table row: headline metrics with their intervals, size, latency, training time."""
    row = {"model": name, "kind": kind, "accuracy": record.get("accuracy")}
    for metric in TABLE_METRICS:
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


def baseline_rows(baselines: dict) -> list[dict]:
    """Rows of the classical baselines' test scores (no intervals, latency or size)."""
    return [model_row(name, f"baseline ({baselines['backbone']} features)", scores["test"], None)
            for name, scores in sorted(baselines["models"].items())]


def summarize(evaluations: dict[str, dict], predictions: dict[str, pd.DataFrame], val_losses: dict[str, float],
              seconds: dict[str, float], baselines: dict | None, params: Params) -> dict:
    """Every row of the comparison, the ensembles, the paired tests against the best backbone, any-dementia ROC."""
    classes = tuple(next(iter(evaluations.values()))["classes"])  # the source's, as evaluate read them
    resamples, seed = params.evaluate.bootstrap, params.seed
    backbones = list(evaluations)
    labels, subjects, probabilities = aligned(predictions, classes)
    weights = loss_weights(np.array([val_losses[name] for name in backbones]))
    records = dict(evaluations)
    rows = [model_row(name, "backbone", evaluations[name], seconds[name]) for name in backbones]
    if len(backbones) > 1:
        members = [probabilities[name] for name in backbones]
        for name, mixed in zip(ENSEMBLES, (ensemble(members), ensemble(members, weights))):
            probabilities[name] = mixed
            scores = score_predictions(labels, mixed, subjects, classes, resamples, seed)
            records[name] = ensemble_record(list(evaluations.values()), scores)
            rows.append(model_row(name, "ensemble", records[name], sum(seconds.values())))
    if baselines:
        rows += baseline_rows(baselines)
    best = max(backbones, key=lambda name: evaluations[name]["balanced_accuracy"])
    rocs = {name: any_dementia(labels, p, params.compare.sensitivity) for name, p in probabilities.items()}
    for row in rows:
        row["any_dementia_auc"] = rocs[row["model"]]["auc"] if row["model"] in rocs else None
    return {
        "best": best,
        "classes": list(classes),
        "test_images": len(labels),
        "test_subjects": len(np.unique(subjects)),
        "single_subject_classes": single_subject_classes(labels, subjects, classes),
        "models": {row["model"]: row for row in rows},
        "order": [row["model"] for row in rows],
        "val_loss": val_losses,
        "ensemble_weights": dict(zip(backbones, weights.tolist())),
        "tests": paired_tests(best, labels, subjects, probabilities, resamples, seed),
        "any_dementia": {"sensitivity_target": params.compare.sensitivity,
                         "models": {name: {k: v for k, v in roc.items() if k not in ("fpr", "tpr")}
                                    for name, roc in rocs.items()}},
        "any_dementia_curves": {name: {"fpr": roc["fpr"].tolist(), "tpr": roc["tpr"].tolist()}
                                for name, roc in rocs.items()},
        "baselines": None if not baselines else {"features": baselines["backbone"], "folds": baselines["folds"]},
    }


def paired_tests(best: str, labels: np.ndarray, subjects: np.ndarray, probabilities: dict[str, np.ndarray],
                 n_resamples: int, seed: int) -> dict:
    """McNemar's exact test and the subject-paired bootstrap of balanced accuracy, best against each other model."""
    predicted = {name: p.argmax(axis=1) for name, p in probabilities.items()}
    return {
        other: {
            "mcnemar": mcnemar_exact(predicted[best] == labels, predicted[other] == labels),
            "balanced_accuracy_difference": paired_bootstrap(labels, predicted[best], predicted[other], subjects,
                                                             n_resamples, seed),
        }
        for other in predicted if other != best
    }


def provenance(params: Params, lock_path: Path, demo: bool, models: dict[str, Path]) -> dict:
    """What produced the figures: the params that matter, the archive's and `models`' hashes as dvc.lock has them."""
    locked = yaml.safe_load(lock_path.read_text())["stages"] if lock_path.is_file() else {}
    return {
        "archive": params.data.archive,
        "demo": demo,
        "archive_md5": _locked_md5(locked, "dedupe", params.data.archive),
        "model_md5": {name: _locked_md5(locked, f"evaluate@{name}", path) for name, path in models.items()},
        "params": {"seed": params.seed, "weights": params.weights, "image_size": params.image_size,
                   "batch_size": params.batch_size, "lr": params.lr, "epochs": params.epochs,
                   "fine_tune_lr": params.fine_tune_lr, "fine_tune_epochs": params.fine_tune_epochs,
                   "evaluate.bootstrap": params.evaluate.bootstrap, "compare.sensitivity": params.compare.sensitivity},
    }


def _locked_md5(locked: dict, stage: str, path: str | Path) -> str | None:
    deps = (locked.get(stage) or {}).get("deps", [])
    return next((dep.get("md5") for dep in deps if Path(dep["path"]) == Path(path)), None)


def write_outputs(summary: dict, origin: dict, summary_path: Path, plots_dir: Path, report_path: Path) -> None:
    """The summary JSON (without the curves), the plot tables and PNG charts under plots_dir, the Markdown report."""
    curves = summary["any_dementia_curves"]
    write_json(summary_path, {key: value for key, value in summary.items()
                              if key not in ("any_dementia_curves", "order")})
    table = pd.DataFrame([summary["models"][name] for name in summary["order"]])
    write_csv(plots_dir / "summary.csv", table, float_format="%.6g")
    roc = pd.concat([pd.DataFrame({"model": name, **curve}) for name, curve in curves.items()], ignore_index=True)
    write_csv(plots_dir / "any_dementia_roc.csv", roc, float_format="%.6g")
    figures = charts.draw_all(table, curves, summary, plots_dir)
    write_text(report_path, report.render(summary, table, origin, figures, report_path.parent))
