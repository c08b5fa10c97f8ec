"""Stage `audit`: the leakage audit (see `pipeline.analysis.audit`); fails when the split by subject leaks."""

import logging

from pipeline.analysis.audit import check_audit, log_verdicts, run_audit, write_outputs
from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.tables.features import load_pool, read_features_meta

log = logging.getLogger(__name__)


def main(params: Params) -> None:
    pool = load_pool(paths.features_dir(params.audit.backbone), paths.INDEX)
    classes = read_features_meta(paths.features_dir(params.audit.backbone))["classes"]
    report = run_audit(pool, len(classes), params.audit, params.seed)
    write_outputs(report, paths.AUDIT_METRICS, paths.AUDIT_PLOTS)
    log_verdicts(report)
    log.info("wrote %s and %s/", paths.AUDIT_METRICS, paths.AUDIT_PLOTS)
    check_audit(report, paths.AUDIT_METRICS)
