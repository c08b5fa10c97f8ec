"""Stage `weights@<backbone>`: the file the base starts from, staged where DVC tracks it.

`dvc push` then carries Keras' ImageNet files to the remote, and a GPU node without internet
gets them with `dvc pull`; a changed file reruns the features stage.
"""

import logging

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.core.registry import get_backbone, input_size
from pipeline.networks.weights import stage_weights

log = logging.getLogger(__name__)


def main(params: Params, backbone_name: str) -> None:
    backbone = get_backbone(backbone_name)
    out_dir = paths.weights_dir(backbone.name)
    record = stage_weights(backbone, params.weights, input_size(backbone, params.image_size), out_dir)
    log.info("%s: weights %s (%s, sha256 %s) staged in %s", backbone.name, params.weights, record["file"] or "no file",
             record["sha256"] or "-", out_dir)
