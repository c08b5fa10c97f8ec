"""Command `select`: each backbone's training params picked on val among DVC's experiments, written to params.yaml."""

import logging
import time
from pathlib import Path

from dvc.exceptions import DvcException
from dvc.repo import Repo

from pipeline.analysis.selection import METRICS, ranking_text, scores_on_test, select
from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.params import Params, nested, write_tune

log = logging.getLogger(__name__)


def main(params: Params, metric: str = METRICS[0]) -> None:
    if metric not in METRICS:
        raise PipelineError(f"--metric {metric}: not a val metric evaluate writes; one of {', '.join(METRICS)}")
    runs, choices = select(experiments(Path.cwd()), params.backbones, metric)
    if not runs:
        raise PipelineError("no run (the last commit or its experiments) has val metrics with the workspace's other "
                            "params: queue a grid (dvc exp run --queue -S ...), dvc queue start, then select")
    entries = {}
    for choice in choices:
        chosen = choice.ranking[0].run if choice.ranking else None
        print(ranking_text(choice, metric, scores_on_test(chosen, choice.backbone) if chosen else None))
        if choice.entry is not None:
            entries[choice.backbone] = nested(choice.entry)
    selected = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "metric": f"val.{metric}",
                "experiments": len(runs)}
    write_tune(paths.PARAMS, entries, selected)
    log.info("tune entries of %s written to %s (chosen on val %s among %d runs); dvc repro trains them",
             ", ".join(entries), paths.PARAMS, metric, len(runs))


def experiments(root: Path) -> list[dict]:
    """`dvc exp show`'s rows as its --json writes them: the workspace, the last commit and its experiments."""
    try:
        with Repo(str(root)) as repo:
            return [state.dumpd() for state in repo.experiments.show(hide_queued=True, hide_failed=True)]
    except DvcException as error:
        raise PipelineError(f"cannot read DVC's experiments in {root} ({error}); run select in the project") from None
