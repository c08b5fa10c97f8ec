"""Stage `compare`: the backbones, two ensembles of them and the classical baselines side by side, on one test split,
or, with split.folds = k > 1, on the k folds' out-of-fold test predictions pooled (every subject tested once).

Reads metrics/eval/<backbone>.json, plots/eval/<backbone>/predictions.csv and val_predictions.csv, the
validation loss and seconds the training stages logged, and metrics/baselines.json and metrics/explain/<backbone>.json
when present. Writes metrics/summary.json, plots/compare/ (summary.csv, per_class_recall.csv, binary_roc.csv when
`data.negative_class` names one, and PNG charts) and reports/comparison.md.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.analysis.comparison import (
    add_explanations,
    fold_spread,
    pooled_evaluation,
    provenance,
    read_json,
    read_predictions,
    summarize,
    training_seconds,
    validation_loss,
    write_outputs,
)
from pipeline.core import paths
from pipeline.core.dvc_yaml import backbone_stage, check_fold_stages
from pipeline.core.params import Params

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    backbones, folds = params.backbones, range(params.split.folds)
    if len(folds) > 1 and paths.DVC_YAML.is_file():
        check_fold_stages(paths.DVC_YAML.read_text(), len(folds), params.weights)
    evaluations = {name: [read_json(paths.eval_metrics(name, fold), evaluate_stage(name, fold)) for fold in folds]
                   for name in backbones}
    classes = tuple(evaluations[backbones[0]][0]["classes"])  # the source's, as evaluate read them from meta.json
    predictions = {name: [read_predictions(paths.predictions(name, fold), evaluate_stage(name, fold)) for fold in folds]
                   for name in backbones}
    val_predictions = {name: pd.concat([read_predictions(paths.val_predictions(name, fold), evaluate_stage(name, fold))
                                        .assign(fold=fold) for fold in folds], ignore_index=True)
                       for name in backbones}  # scored per fold: a subject is in several folds' val
    if len(folds) == 1:
        pooled = {name: records[0] for name, records in evaluations.items()}
    else:
        pooled = {name: pooled_evaluation(evaluations[name], predictions[name], classes, params.evaluate.bootstrap,
                                          params.seed, params.data.ordinal) for name in backbones}
    summary = summarize(
        evaluations=pooled,
        predictions={name: pd.concat(frames, ignore_index=True) for name, frames in predictions.items()},
        val_predictions=val_predictions,
        val_losses={name: float(np.mean([validation_loss(paths.live_metrics("finetune", name, fold), name)
                                         for fold in folds]))
                    for name in backbones if len(backbones) > 1},  # only ensembles need them
        seconds={name: sum(training_seconds(seconds_sources(name, fold)) for fold in folds) for name in backbones},
        baselines=read_json(paths.BASELINES_METRICS, "baselines") if paths.BASELINES_METRICS.is_file() else None,
        classes=classes,
        ordinal=params.data.ordinal,
        negative_class=params.data.negative_class,
        reference=params.compare.reference,
        resamples=params.evaluate.bootstrap,
        seed=params.seed,
        sensitivity=params.compare.sensitivity,
    )
    if len(folds) > 1:
        summary["folds"] = {"k": len(folds), "models": fold_spread(pooled)}
    explained = [name for name in backbones if paths.explain_metrics(name).is_file()]
    add_explanations(summary, {name: read_json(paths.explain_metrics(name), f"explain@{name}") for name in explained},
                     {name: paths.explain_grid(name) for name in explained})
    origin = provenance(params, params.data.archive, paths.LOCK, demo=params.data.reads_demo,
                        models={name: paths.model_files(name).model for name in backbones})
    origin["shared_images"] = read_json(paths.SPLIT_METRICS, "split").get("shared_images")  # own splits only
    write_outputs(summary, origin, paths.SUMMARY, paths.COMPARE_PLOTS, paths.REPORT)
    reference = summary["reference"]
    log.info("reference model %s (%s); wrote %s, %s/ and %s", reference["model"], reference["rule"], paths.SUMMARY,
             paths.COMPARE_PLOTS, paths.REPORT)


def evaluate_stage(backbone: str, fold: int) -> str:
    return backbone_stage("evaluate", backbone, fold)


def seconds_sources(backbone: str, fold: int) -> dict[str, Path]:
    """The metrics files in which the features, train and finetune stages of a fold logged their seconds."""
    return {backbone_stage("features", backbone, fold): paths.feature_metrics(backbone, fold),
            backbone_stage("train", backbone, fold): paths.live_metrics("train", backbone, fold),
            backbone_stage("finetune", backbone, fold): paths.live_metrics("finetune", backbone, fold)}
