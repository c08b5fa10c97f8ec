"""Stage `synth`: a demo archive laid out like Kaggle's, with its ground truth beside it."""

import logging

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.mri.synth import write_archive, write_truth

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    truth = write_archive(paths.DEMO_ARCHIVE, tuple(name for name, _ in params.synth.subjects), params.synth)
    truth_path = paths.truth_file(paths.DEMO_ARCHIVE)
    write_truth(truth_path, truth)
    log.info("wrote %d files to %s and their ground truth to %s", len(truth), paths.DEMO_ARCHIVE, truth_path)
