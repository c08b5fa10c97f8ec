"""Honest tuning end to end on the tiny project: a grid over two backbones queued and run, `select` writes each
backbone's best setting on val into params.yaml, and `dvc repro` reruns only the backbones whose params changed."""

import re

import yaml

from pipeline.core.params import parse_params, tuned_values
from tests.conftest import BACKBONES, commit, copy_project, ran_stages, run
from tests.test_experiments import queued_names, wait_for_queue

GRID = "0.0003"  # the lr queued beside the committed 0.001: on the tiny data val prefers it for one backbone only
UPSTREAM = {"synth", "dedupe", "split", "preprocess", "weights", "features", "audit", "baselines", "plots_page"}


def test_grid_select_and_repro_rerun_only_the_retuned_backbones(built_project, tmp_path):
    project = copy_project(built_project, tmp_path)
    names = queued_names(run(["dvc", "exp", "run", "--queue", "-S", f"lr={GRID}"], project))
    assert len(names) == len(GRID.split(","))
    run(["dvc", "queue", "start", "--jobs", "1"], project)
    try:
        status = wait_for_queue(project)
    finally:
        run(["dvc", "queue", "stop", "--kill"], project)
    assert all(re.search(rf"{name}\s.*Success", status) for name in names), status

    printed = run(["python", "-m", "pipeline", "select"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    runs = 1 + len(names)  # the baseline commit and the experiments
    assert params["lr"] == 0.001 and params["tune"]["selected"]["experiments"] == runs, printed
    chosen = {}
    for backbone in BACKBONES:
        lines = printed[printed.index(f"{backbone}: {runs} setting(s) ranked on val balanced_accuracy"):].splitlines()
        best = lines[2].split()[1]  # the first ranked row's run
        shown = yaml.safe_load(run(["git", "show", f"{run_ref(project, best)}:params.yaml"], project))
        assert tuned_values(params, backbone) == tuned_values(shown, backbone), printed
        chosen[backbone] = tuned_values(shown, backbone)["lr"]
    parse_params(params)

    retuned = {backbone for backbone, lr in chosen.items() if lr != 0.001}
    assert retuned and retuned != set(BACKBONES), printed  # val moved one backbone and kept the other
    ran = redone_stages(run(["dvc", "repro"], project))
    assert ran == {f"{stage}@{backbone}" for stage in ("train", "finetune", "evaluate", "explain")
                   for backbone in retuned} | {"compare"}, ran
    assert not {stage.split("@")[0] for stage in ran} & UPSTREAM
    commit(project, "tuned")
    assert "up to date" in run(["dvc", "status"], project)


def redone_stages(output: str) -> set[str]:
    """The stages DVC ran or restored from its run-cache (the retuned model's bytes equal the experiment's, so
    evaluate comes back from the cache), i.e. all that it did not skip as unchanged."""
    return set(ran_stages(output)) | set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def run_ref(project, name: str) -> str:
    """The commit of a run `select` names: an experiment's ref, or the baseline branch itself."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project).split()
    found = [ref for ref in refs if ref.endswith(f"/{name}")]
    return found[0] if found else "HEAD"
