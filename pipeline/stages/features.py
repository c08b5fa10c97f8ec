"""Stage `features@<backbone>` (`features_fold@<backbone>-<fold>`): the frozen base's embeddings of every scan, cached
per split."""

import logging
import time

from pipeline.core import paths
from pipeline.core.files import write_json
from pipeline.core.params import Params
from pipeline.networks.features import write_features

log = logging.getLogger(__name__)


def main(params: Params, backbone_name: str, fold: int = 0) -> None:
    out_dir = paths.features_dir(backbone_name, fold)
    start = time.perf_counter()
    meta = write_features(paths.tfrecords_dir(fold), paths.weights_dir(backbone_name), out_dir, backbone_name, params)
    seconds = round(time.perf_counter() - start, 1)
    metrics_path = paths.feature_metrics(backbone_name, fold)
    write_json(metrics_path, {"seconds": seconds})
    log.info("%s: %d-d features of %s in %.0f s, written to %s; seconds in %s", backbone_name, meta["dim"],
             ", ".join(f"{split} {count}" for split, count in meta["counts"].items()), seconds, out_dir, metrics_path)
