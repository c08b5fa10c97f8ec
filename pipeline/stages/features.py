"""Stage `features@<backbone>` (`features_fold@<backbone>-<fold>`): the frozen base's embeddings of every scan, cached
per split. With pretrained weights, a fold after the first takes its unaugmented embeddings from fold 0's."""

import logging
import time

from pipeline.core import paths
from pipeline.core.dvc_yaml import check_fold_stages, shares_embeddings
from pipeline.core.files import write_json
from pipeline.core.params import Params
from pipeline.networks.features import write_features

log = logging.getLogger(__name__)


def main(params: Params, backbone_name: str, fold: int = 0) -> None:
    out_dir = paths.features_dir(backbone_name, fold)
    shared_dir = paths.features_dir(backbone_name, 0) if fold and shares_embeddings(params.weights) else None
    if shared_dir and paths.DVC_YAML.is_file():  # DVC must rerun this fold's features when fold 0's change
        check_fold_stages(paths.DVC_YAML.read_text(), params.split.folds, params.weights)
    start = time.perf_counter()
    meta = write_features(paths.tfrecords_dir(fold), paths.weights_dir(backbone_name), out_dir, backbone_name, params,
                          shared_dir)
    seconds = round(time.perf_counter() - start, 1)
    metrics_path = paths.feature_metrics(backbone_name, fold)
    write_json(metrics_path, {"seconds": seconds})
    log.info("%s: %d-d features of %s in %.0f s, written to %s%s; seconds in %s", backbone_name, meta["dim"],
             ", ".join(f"{split} {count}" for split, count in meta["counts"].items()), seconds, out_dir,
             f" (unaugmented scans' from {shared_dir})" if shared_dir else "", metrics_path)
