"""Stage `finetune@<backbone>` (`finetune_fold@<backbone>-<fold>`): base and trained head as one model, the top of the base unfrozen, on augmented scans."""

import logging

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.core.registry import get_backbone
from pipeline.networks.finetune import fine_tune

log = logging.getLogger(__name__)


def main(params: Params, backbone_name: str, fold: int = 0) -> None:
    backbone = get_backbone(backbone_name)
    files = paths.model_files(backbone.name, fold)
    live_dir = paths.live_dir("finetune", backbone.name, fold)
    meta = fine_tune(paths.tfrecords_dir(fold), paths.features_dir(backbone.name, fold), files, live_dir, backbone,
                     params.for_backbone(backbone.name))
    log.info("%s fine-tuned: %d of %d parameters trainable, %d epochs in %.0f s on %d replica(s); saved to %s",
             backbone.name, meta["trainable_params"], meta["total_params"], meta["epochs_run"], meta["seconds"],
             meta["replicas"], meta["saved_to"])
