"""Stage `dedupe`: account for every file of the source, trace copies to sources and group images by subject."""

import logging
from pathlib import Path

from pipeline.core import paths
from pipeline.core.files import write_json
from pipeline.core.params import Params
from pipeline.mri.truth import score_against_truth
from pipeline.sources.factory import index_source
from pipeline.tables.index import write_index
from pipeline.tables.source import write_source_info

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    paths.SOURCE_IMAGES.mkdir(parents=True, exist_ok=True)  # a DVC output, empty unless the source is TFDS
    rows, report, info = index_source(params, paths.SOURCE_IMAGES)
    truth_path = paths.truth_file(Path(params.data.archive))
    if info.source == "archive" and truth_path.is_file():
        report["truth"] = score_against_truth(rows, truth_path)
    for warning in _warnings(report):
        log.warning(warning)
    write_index(paths.INDEX, rows)
    write_source_info(paths.SOURCE_INFO, info)
    write_json(paths.DEDUPE_METRICS, report)
    files = report["files"]
    log.info("indexed %d files of %s (%d used, %d set aside, %d classes, %d channel(s)) into %s; metrics in %s",
             files["found"], info.source, files["used"], files["set_aside"], len(info.classes), info.channels,
             paths.INDEX, paths.DEDUPE_METRICS)


def _warnings(report: dict) -> list[str]:
    """What the group CSV claimed that the files contradict."""
    groups = report.get("groups") or {}
    warnings = []
    if groups.get("listed_but_missing"):
        warnings.append(f"data.groups lists {groups['listed_but_missing']} file(s) not in the folder, e.g. "
                        f"{groups['missing_examples'][0]} (see metrics/dedupe.json)")
    if groups.get("groups_in_two_or_more_classes"):
        warnings.append(f"{groups['groups_in_two_or_more_classes']} group(s) hold images of two or more classes, e.g. "
                        f"{groups['mixed_examples'][0]}; each goes whole to one split")
    return warnings
