"""Stage `baselines`: classical models on one backbone's cached features, by grouped cross-validation and on test."""

import logging

from pipeline.analysis.baselines import run_baselines
from pipeline.core import paths
from pipeline.core.files import write_json
from pipeline.core.params import Params
from pipeline.tables.features import load_pool, read_features_meta

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    pool = load_pool(paths.features_dir(params.baselines.backbone), paths.INDEX)
    classes = read_features_meta(paths.features_dir(params.baselines.backbone))["classes"]
    report = run_baselines(pool, len(classes), params.baselines, params.seed, ordinal=params.data.ordinal)
    write_json(paths.BASELINES_METRICS, report)
    for name, scores in report["models"].items():
        log.info("%s: CV balanced accuracy %.3f (std %.3f), test balanced accuracy %.3f", name,
                 scores["cv"]["balanced_accuracy"], scores["cv"]["balanced_accuracy_std"],
                 scores["test"]["balanced_accuracy"])
    log.info("wrote %s", paths.BASELINES_METRICS)
