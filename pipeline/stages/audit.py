"""Stage `audit` (`audit_fold@<fold>`: a fold's split, at its paths): the leakage audit (see `pipeline.analysis.audit`)
and the pixel check of the found subjects (`pipeline.analysis.straddle`); fails when either sees a leak, naming the fold
when split.folds > 1."""

import logging
from pathlib import Path

from pipeline.analysis.audit import check_audit, fold_level, log_verdicts, run_audit, write_outputs
from pipeline.analysis.straddle import check_cut_subjects, check_straddling, cut_subjects, straddling_images
from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.params import Params
from pipeline.mri.fingerprint import upright_views
from pipeline.tables.features import load_pool, read_features_meta
from pipeline.tables.source import read_source_info

log = logging.getLogger(__name__)


def main(params: Params, fold: int = 0) -> None:
    features_dir = paths.features_dir(params.audit.backbone, fold)
    metrics_path, plots_dir = paths.in_fold(paths.AUDIT_METRICS, fold), paths.in_fold(paths.AUDIT_PLOTS, fold)
    pool = load_pool(features_dir, paths.INDEX)
    classes = read_features_meta(features_dir)["classes"]
    report = run_audit(pool, len(classes), params.audit, params.seed, fold_level(params.split.folds))
    originals = pool.rows[pool.rows["kind"] == "original"]
    originals = originals[originals.groupby("subject")["path"].transform("size") > 1]  # no pixels judge a lone image
    views = upright_views(Path(read_source_info(paths.SOURCE_INFO).root), originals["path"].tolist())
    found = (views, originals["path"].tolist(), originals["label"].tolist(), originals["subject"].tolist(),
             originals["split"].tolist())
    report["straddling"] = straddling_images(*found)
    report["cut_subjects"] = cut_subjects(*found)
    report["passed"] = report["passed"] and report["straddling"]["passed"] and report["cut_subjects"]["passed"]
    write_outputs(report, metrics_path, plots_dir)
    log_verdicts(report)
    log.info("pixel check: %d of %d originals as close to another split as to their own subject "
             "(honest bound %d)", report["straddling"]["flagged"], report["straddling"]["checked"],
             report["straddling"]["bound"])
    log.info("pixel check: %d of %d pairs of subjects in two splits go on one into the other (highest score %.3f, "
             "bound %.1f)", report["cut_subjects"]["cut"], report["cut_subjects"]["pairs_checked"],
             report["cut_subjects"]["highest_score"], report["cut_subjects"]["bound"])
    log.info("wrote %s and %s/", metrics_path, plots_dir)
    try:
        check_straddling(report["straddling"], metrics_path)
        check_cut_subjects(report["cut_subjects"], metrics_path)
        check_audit(report, metrics_path)
    except PipelineError as error:
        raise PipelineError(f"fold {fold} of {params.split.folds}: {error}" if params.split.folds > 1 else
                            str(error)) from None
