"""Stage `train@<backbone>` (`train_fold@<backbone>-<fold>`): a dense classifier head trained on the cached frozen-base features."""

import logging

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.core.registry import get_backbone
from pipeline.networks.head import train_head

log = logging.getLogger(__name__)


def main(params: Params, backbone_name: str, fold: int = 0) -> None:
    backbone = get_backbone(backbone_name)
    out_path = paths.model_files(backbone.name, fold).head
    summary = train_head(paths.features_dir(backbone.name, fold), out_path, paths.live_dir("train", backbone.name, fold),
                         params.for_backbone(backbone.name))
    log.info("%s head: %d epochs in %.0f s, %s; saved to %s", backbone.name, summary["epochs_run"],
             summary["seconds"], ", ".join(f"{k} {v:.3f}" for k, v in summary["final"].items()), out_path)
