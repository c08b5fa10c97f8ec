"""Stage `plots_page`: the HTML template `.dvc/config` names for `dvc plots show`, drawing offline."""

import logging

from pipeline.analysis.plots_page import page, versions
from pipeline.core import paths
from pipeline.core.files import write_text
from pipeline.core.params import Params

log = logging.getLogger(__name__)


def main(_params: Params) -> None:
    """Write the template; it reads no params."""
    write_text(paths.PLOTS_TEMPLATE, page())
    log.info("wrote %s (%s)", paths.PLOTS_TEMPLATE, versions())
