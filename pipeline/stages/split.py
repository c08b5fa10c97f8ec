"""Stage `split`: whole subjects to train, val and test, stratified by class, the source's own splits, or
`split.folds` folds by subject (rules: `pipeline.tables.split`)."""

import json
import logging
from pathlib import Path

import pandas as pd

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.files import write_csv, write_text
from pipeline.core.params import SPLITS, Params
from pipeline.core.text import escape
from pipeline.mri.truth import subjects_across_splits
from pipeline.tables.index import read_index
from pipeline.tables.source import SourceInfo, read_source_info
from pipeline.tables.split import (
    assign_folds,
    assign_splits,
    folds_metrics,
    own_splits,
    split_metrics,
    stack_folds,
)

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    index = read_index(paths.INDEX)
    info = read_source_info(paths.SOURCE_INFO)
    use_own = info.own_splits and params.split.source_splits
    if params.split.folds > 1:
        if use_own:
            raise PipelineError(f"split.folds = {params.split.folds}, but {paths.SOURCE_INFO} says the source ships "
                                "its own splits and split.source_splits is true: set split.source_splits: false to "
                                "fold by group here, or split.folds: 1 to keep the source's splits")
        write_folds(params, index, info)
        return
    if use_own:
        split = own_splits(index, info.classes, params.split.drop_shared_images)
        log.info("using the source's own train/val/test splits (split.source_splits: false splits here instead)")
    else:
        split = assign_splits(index, info.classes, params.split.ratios, params.seed, params.split.copies_in_train)
    for warning in split.warnings:
        log.warning(warning)
    metrics = split_metrics(split, info.classes)
    truth_path = paths.truth_file(Path(params.data.archive))
    if info.source == "archive" and truth_path.is_file():
        metrics["truth"] = subjects_across_splits(dict(zip(split.rows["path"], split.rows["split"])), truth_path)
    if not use_own and (metrics["shared_subjects"] or metrics["shared_sources"]):
        raise PipelineError(
            f"{paths.INDEX}: {metrics['shared_subjects']} subjects and {metrics['shared_sources']} sources would "
            "fall in more than one split (a copy's subject differs from its source's); rerun `dvc repro dedupe`"
        )
    write_csv(paths.SPLITS, split.rows.map(escape), lineterminator="\n", encoding="utf-8")
    write_text(paths.SPLIT_METRICS, json.dumps(metrics, indent=2, sort_keys=True))
    sizes = ", ".join(f"{name} {metrics['splits'][name]['images']['total']}" for name in SPLITS)
    left_out = sum(split.copies_left_out.values())
    log.info("wrote %d rows (%s) to %s and metrics to %s; left out %d copies",
             len(split.rows), sizes, paths.SPLITS, paths.SPLIT_METRICS, left_out)


def write_folds(params: Params, index: pd.DataFrame, info: SourceInfo) -> None:
    """`split.folds` folds by subject to splits.csv (with `fold`) and their metrics; a fold that leaks stops it."""
    folds = assign_folds(index, info.classes, params.split.ratios, params.seed, params.split.copies_in_train,
                         params.split.folds)
    for warning in [*folds.warnings, *(note for split in folds.splits for note in split.warnings)]:
        log.warning(warning)
    metrics = folds_metrics(folds, info.classes)
    truth_path = paths.truth_file(Path(params.data.archive))
    for fold, (split, fold_metrics) in enumerate(zip(folds.splits, metrics["per_fold"])):
        if info.source == "archive" and truth_path.is_file():
            fold_metrics["truth"] = subjects_across_splits(dict(zip(split.rows["path"], split.rows["split"])),
                                                           truth_path)
        if fold_metrics["shared_subjects"] or fold_metrics["shared_sources"]:
            raise PipelineError(
                f"{paths.INDEX}: in fold {fold}, {fold_metrics['shared_subjects']} subjects and "
                f"{fold_metrics['shared_sources']} sources would fall in more than one split (a copy's subject differs "
                "from its source's); rerun `dvc repro dedupe`"
            )
    rows = stack_folds(folds)
    write_csv(paths.SPLITS, rows.astype({"fold": str}).map(escape), lineterminator="\n", encoding="utf-8")
    write_text(paths.SPLIT_METRICS, json.dumps(metrics, indent=2, sort_keys=True))
    log.info("wrote %d folds by subject, %d rows, to %s and metrics to %s; %d of %d subjects tested once",
             metrics["folds"], len(rows), paths.SPLITS, paths.SPLIT_METRICS, metrics["subjects_tested_once"],
             metrics["subjects"])
