"""Queued experiments over fine_tune_lr, compared with DVC's commands, and moved to another clone by exp push/pull."""

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import BACKBONES, commit, copy_project, edit_params, ran_stages, run

BACKBONE = BACKBONES[0]
GRID = ("0.0002", "0.00005")  # fine_tune_lr values queued
UNAFFECTED = {"synth", "dedupe", "split", "preprocess", "features", "train", "audit", "baselines"}  # read no fine_tune_lr


def queued_names(output: str) -> list[str]:
    """Experiment names from `dvc exp run --queue`'s "Queued experiment 'name'" lines."""
    return re.findall(r"Queued experiment '([^']+)'", output)


def experiment_ref(project: Path, name: str) -> str:
    """The git ref DVC keeps an experiment's commit under (refs/exps/.../<name>)."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project).split()
    found = [ref for ref in refs if ref.endswith(f"/{name}")]
    assert len(found) == 1, refs
    return found[0]


def wait_for_queue(project: Path, seconds: float = 600) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return the last status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project)
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(3)
    pytest.fail(f"the queue did not finish within {seconds} s:\n{status}")


@pytest.fixture(scope="module")
def experiments(built_project, module_tmp) -> Iterator[tuple[Path, list[str]]]:
    """A one-backbone copy of the project pushed to a bare git origin, with a fine_tune_lr grid queued and run."""
    project = copy_project(built_project, module_tmp)
    edit_params(project, backbones=[BACKBONE])
    run(["dvc", "repro"], project)
    commit(project, "one backbone")
    run(["git", "init", "-q", "--bare", str(project.parent / "origin.git")], project)
    run(["git", "remote", "add", "origin", "../origin.git"], project)
    run(["git", "push", "-q", "origin", "HEAD"], project)
    names = queued_names(run(["dvc", "exp", "run", "--queue", "-S", f"fine_tune_lr={','.join(GRID)}"], project))
    assert len(names) == len(GRID)
    run(["dvc", "queue", "start", "--jobs", str(len(GRID))], project)  # both at once
    try:
        status = wait_for_queue(project)
        assert all(re.search(rf"{name}\s.*Success", status) for name in names), status
        yield project, names
    finally:
        run(["dvc", "queue", "stop", "--kill"], project)  # no worker outlives the test, even a failed one


def test_queue_runs_the_grid_from_finetune_on(experiments):
    project, names = experiments
    for name in names:
        log = run(["dvc", "queue", "logs", name], project)
        ran = ran_stages(log)
        assert ran[0] == f"finetune@{BACKBONE}" and f"evaluate@{BACKBONE}" in ran, log
        assert not {stage.split("@")[0] for stage in ran} & UNAFFECTED, log
    table = run(["dvc", "exp", "show", "--csv", "--only-changed", "--keep", "(.*:)?balanced_accuracy$"], project)
    rows = {row["Experiment"]: row for row in csv.DictReader(io.StringIO(table))}
    assert {float(rows[name]["fine_tune_lr"]) for name in names} == {float(value) for value in GRID}
    for name in names:
        logged = json.loads(run(["git", "show", f"{experiment_ref(project, name)}:metrics/eval/{BACKBONE}.json"],
                                project))
        assert float(rows[name]["balanced_accuracy"]) == pytest.approx(logged["balanced_accuracy"], abs=1e-4)


def test_two_experiments_compare_by_params_metrics_and_plots(experiments):
    project, (first, second) = experiments
    diff = run(["dvc", "exp", "diff", first, second, "--md"], project)
    assert re.search(r"params.yaml\s*\|\s*fine_tune_lr", diff), diff
    changed = json.loads(run(["dvc", "metrics", "diff", first, second, "--json"], project))  # changed ones only
    evaluation = f"metrics/eval/{BACKBONE}.json"
    own = {name: json.loads(run(["git", "show", f"{experiment_ref(project, name)}:{evaluation}"], project))
           for name in (first, second)}
    assert own[first]["log_loss"] != own[second]["log_loss"]
    assert changed[evaluation]["log_loss"]["old"] == pytest.approx(own[first]["log_loss"])
    assert changed[evaluation]["log_loss"]["new"] == pytest.approx(own[second]["log_loss"])
    for path, metrics in changed.items():
        assert all(values["old"] != values["new"] for values in metrics.values()), (path, metrics)
    page = project.parent / "plots-diff"
    run(["dvc", "plots", "diff", first, second, "-o", str(page)], project)
    html = (page / "index.html").read_text()
    records = {name: {re.sub(rf'"rev": "{re.escape(name)}"', "", record)
                      for record in re.findall(rf'{{[^{{}}]*"rev": "{re.escape(name)}"[^{{}}]*}}', html)}
               for name in (first, second)}
    assert records[first] and records[second], "a revision's data is missing from the plots page"
    assert records[first] != records[second]  # each revision's own values, not one revision's twice


def test_exp_push_and_pull_carry_an_experiment_to_another_clone(experiments):
    project, (first, _) = experiments
    run(["dvc", "exp", "push", "origin", first], project)
    other = project.parent / "other"
    run(["git", "clone", "-q", str(project.parent / "origin.git"), str(other)], project.parent)
    run(["dvc", "exp", "pull", "origin", first], other)
    assert first in run(["dvc", "exp", "list", "--name-only"], other)
    run(["dvc", "exp", "apply", first], other)
    assert "Data and pipelines are up to date." in run(["dvc", "status"], other)
    lock = yaml.safe_load((other / "dvc.lock").read_text())
    model = next(out for out in lock["stages"][f"finetune@{BACKBONE}"]["outs"] if out["path"].endswith("model.keras"))
    cached = project / ".dvc/cache/files/md5" / model["md5"][:2] / model["md5"][2:]
    assert (other / f"models/{BACKBONE}/model.keras").read_bytes() == cached.read_bytes()
