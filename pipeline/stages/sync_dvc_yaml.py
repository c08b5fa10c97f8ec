"""Command `sync-dvc-yaml`: dvc.yaml's training charts and model registry rewritten for params.yaml's `backbones`, and
its fold stages for `split.folds` and `weights`."""

import logging

from pipeline.core import paths
from pipeline.core.dvc_yaml import synced
from pipeline.core.errors import PipelineError
from pipeline.core.files import write_text
from pipeline.core.params import Params

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    """Rewrite dvc.yaml's generated blocks, or say they already follow `backbones` and `split.folds`."""
    if not paths.DVC_YAML.is_file():
        raise PipelineError(f"{paths.DVC_YAML} not found; run sync-dvc-yaml in the project's root folder")
    text = paths.DVC_YAML.read_text()
    new = synced(text, list(params.backbones), params.split.folds, params.weights)
    if new == text:
        log.info("%s already follows backbones: %s, split.folds: %d and weights: %s", paths.DVC_YAML,
                 ", ".join(params.backbones), params.split.folds, params.weights)
        return
    write_text(paths.DVC_YAML, new)
    log.info("%s: training plots, artifacts and fold stages rewritten for backbones: %s, split.folds: %d and "
             "weights: %s", paths.DVC_YAML, ", ".join(params.backbones), params.split.folds, params.weights)
