"""Stage `synth`: a demo archive laid out like Kaggle's, with its ground truth beside it; only a note when the run
reads other images (`data.source`, `data.archive`), so that real data never waits for the demo."""

import logging

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.mri.synth import write_archive, write_truth, write_unused

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    truth_path = paths.truth_file(paths.DEMO_ARCHIVE)
    if not params.data.reads_demo:
        reason = f"data.source is {params.data.source} and data.archive is {params.data.archive}"
        write_unused(paths.DEMO_ARCHIVE, reason)
        write_truth(truth_path, [])
        log.info("no demo archive written (%s): only a note in %s", reason, paths.DEMO_ARCHIVE)
        return
    truth = write_archive(paths.DEMO_ARCHIVE, tuple(name for name, _ in params.synth.subjects), params.synth)
    write_truth(truth_path, truth)
    log.info("wrote %d files to %s and their ground truth to %s", len(truth), paths.DEMO_ARCHIVE, truth_path)
