"""Stage `dedupe`: account for every file of the archive and trace copies to sources and subjects."""

import logging
from pathlib import Path

from pipeline.core import paths
from pipeline.core.files import write_json
from pipeline.core.params import Params
from pipeline.mri.dedupe import build_index
from pipeline.mri.truth import score_against_truth
from pipeline.tables.index import write_index

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    root = Path(params.data.archive)
    rows, report = build_index(root, params.data.classes, params.dedupe)
    truth_path = paths.truth_file(root)
    if truth_path.is_file():
        report["truth"] = score_against_truth(rows, truth_path)
    write_index(paths.INDEX, rows)
    write_json(paths.DEDUPE_METRICS, report)
    used = report["files"]["used"]
    log.info("indexed %d files (%d used) into %s; metrics in %s", len(rows), used, paths.INDEX, paths.DEDUPE_METRICS)
