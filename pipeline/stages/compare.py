"""Stage `compare`: the backbones, two ensembles of them and the classical baselines side by side, on one test split.

Reads metrics/eval/<backbone>.json, plots/eval/<backbone>/predictions.csv and val_predictions.csv, the
validation loss and seconds the training stages logged, and metrics/baselines.json and metrics/explain/<backbone>.json
when present. Writes metrics/summary.json, plots/compare/ (summary.csv, per_class_recall.csv, binary_roc.csv when
`data.negative_class` names one, and PNG charts) and reports/comparison.md.
"""

import logging
from pathlib import Path

from pipeline.analysis.comparison import (
    add_explanations,
    provenance,
    read_json,
    read_predictions,
    summarize,
    training_seconds,
    validation_loss,
    write_outputs,
)
from pipeline.core import paths
from pipeline.core.params import Params

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    backbones = params.backbones
    evaluations = {name: read_json(paths.eval_metrics(name), f"evaluate@{name}") for name in backbones}
    classes = tuple(evaluations[backbones[0]]["classes"])  # the source's, as evaluate read them from meta.json
    summary = summarize(
        evaluations=evaluations,
        predictions={name: read_predictions(paths.predictions(name), name) for name in backbones},
        val_predictions={name: read_predictions(paths.val_predictions(name), name) for name in backbones},
        val_losses={name: validation_loss(paths.live_metrics("finetune", name), name) for name in backbones
                    if len(backbones) > 1},  # only ensembles need them
        seconds={name: training_seconds(seconds_sources(name)) for name in backbones},
        baselines=read_json(paths.BASELINES_METRICS, "baselines") if paths.BASELINES_METRICS.is_file() else None,
        classes=classes,
        ordinal=params.data.ordinal,
        negative_class=params.data.negative_class,
        reference=params.compare.reference,
        resamples=params.evaluate.bootstrap,
        seed=params.seed,
        sensitivity=params.compare.sensitivity,
    )
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


def seconds_sources(backbone: str) -> dict[str, Path]:
    """The metrics files in which the features, train and finetune stages logged their seconds."""
    return {f"features@{backbone}": paths.feature_metrics(backbone),
            f"train@{backbone}": paths.live_metrics("train", backbone),
            f"finetune@{backbone}": paths.live_metrics("finetune", backbone)}
