"""Stage `baselines`: classical models on one backbone's cached features and on the raw pixels, and multi-class
reductions to binary models, by grouped cross-validation and on test."""

import logging

from pipeline.analysis.baselines import run_baselines
from pipeline.core import paths
from pipeline.core.files import write_json
from pipeline.core.params import SPLITS, Params
from pipeline.imaging.tfrecords import read_pixels
from pipeline.tables.features import join_index, load_pool, read_features_meta

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    features_dir = paths.features_dir(params.baselines.backbone)
    features = load_pool(features_dir, paths.INDEX)
    classes = tuple(read_features_meta(features_dir)["classes"])
    splits = {split: read_pixels(paths.TFRECORDS, split, params.baselines.pixel_size) for split in SPLITS}
    pixels = join_index(splits, paths.INDEX, str(paths.TFRECORDS), "dvc repro preprocess")
    report = run_baselines(features, pixels, classes, params.baselines, params.seed, ordinal=params.data.ordinal)
    write_json(paths.BASELINES_METRICS, report)
    for note in report["notes"]:
        log.warning("%s", note)
    for group, models in ((f"{params.baselines.backbone} features", report["models"]),
                          (f"pixels {params.baselines.pixel_size} px", report["pixels"]["models"]),
                          (f"reductions on {report['reductions']['input']}", report["reductions"]["models"])):
        for name, scores in models.items():
            log.info("%s, %s: CV balanced accuracy %.3f (std %.3f, %d folds), test balanced accuracy %.3f", group,
                     name, scores["cv"]["balanced_accuracy"], scores["cv"]["balanced_accuracy_std"], report["folds"],
                     scores["test"]["balanced_accuracy"])
    log.info("wrote %s", paths.BASELINES_METRICS)
