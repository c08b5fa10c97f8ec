"""`select` on crafted `dvc exp show --json` tables: it follows val (never test), breaks ties as stated, compares only
like with like, and writes tune entries into params.yaml leaving every other line as it was."""

import copy
import shutil

import pytest
import yaml

from pipeline.__main__ import main as cli
from pipeline.analysis import report
from pipeline.analysis.comparison import provenance
from pipeline.analysis.selection import choose, describe_selection, ranking_text, runs_of, scores_on_test, select
from pipeline.core import paths
from pipeline.core.params import load_params, nested, parse_params, tuned_values, write_tune
from pipeline.stages import select as select_command
from tests.conftest import ROOT, raw_params

A, B = "MobileNetV3Small", "VGG19"


def params_with(**top) -> dict:
    """The committed params with two backbones and `top` merged over them."""
    return raw_params(backbones=[A, B], **top)


def evaluation(val: float, test: float, val_loss: float = 1.0) -> dict:
    """metrics/eval/<backbone>.json's content as DVC shows it: test at the top level, val under `val`."""
    return {"data": {"balanced_accuracy": test, "log_loss": 0.5, "val": {"balanced_accuracy": val, "log_loss": val_loss}}}


def revision(name: str, params: dict, scores: dict[str, tuple]) -> dict:
    """One row of `dvc exp show --json`: params.yaml and each backbone's (val, test[, val log loss])."""
    metrics = {f"metrics/eval/{backbone}.json": evaluation(*score) for backbone, score in scores.items()}
    return {"rev": f"{name}-rev", "name": name, "error": None,
            "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}


def table(workspace: dict, baseline: dict, experiments: list[dict]) -> list[dict]:
    """`dvc exp show --json`'s list: the workspace, then the baseline commit with its experiments."""
    return [{**revision("workspace", workspace, {}), "rev": "workspace", "name": None},
            {**baseline, "experiments": [{"revs": [exp], "name": exp["name"]} for exp in experiments]}]


def test_select_follows_val_where_test_disagrees():
    base = params_with()
    shown = table(base, revision("main", base, {A: (0.5, 0.5), B: (0.5, 0.5)}), [
        revision("high-lr", params_with(lr=0.01), {A: (0.8, 0.3), B: (0.4, 0.9)}),
        revision("low-lr", params_with(lr=0.0001), {A: (0.6, 0.9), B: (0.7, 0.2)}),
    ])
    runs, choices = select(shown, (A, B), "balanced_accuracy")
    assert len(runs) == 3
    by_backbone = {choice.backbone: choice for choice in choices}
    assert [c.run.name for c in by_backbone[A].ranking] == ["high-lr", "low-lr", "main"]
    assert by_backbone[A].entry == {"lr": 0.01}
    assert [c.run.name for c in by_backbone[B].ranking] == ["low-lr", "main", "high-lr"]
    assert by_backbone[B].entry == {"lr": 0.0001}


def test_over_folds_select_ranks_on_the_folds_mean_val_as_compare_picks():
    def folded(name: str, params: dict, scores: list[tuple]) -> dict:  # A's (val, test) in each fold
        row = revision(name, params, {})
        row["data"]["metrics"] = {str(paths.eval_metrics(A, fold)): evaluation(*score) for fold, score in
                                  enumerate(scores)}
        return row

    base, fast = params_with(split={"folds": 3}), params_with(split={"folds": 3}, lr=0.01)
    shown = table(base, folded("main", base, [(0.9, 0.1), (0.3, 0.2), (0.3, 0.3)]), [
        folded("high-lr", fast, [(0.6, 0.4), (0.6, 0.5), (0.6, 0.9)]),
        folded("fold-missing", params_with(split={"folds": 3}, lr=0.1), [(1.0, 1.0), (1.0, 1.0)]),
    ])
    runs, (choice, _) = select(shown, (A, B), "balanced_accuracy")
    assert [candidate.run.name for candidate in choice.ranking] == ["high-lr", "main"]  # fold 0 alone: main first
    assert choice.ranking[1].val["balanced_accuracy"] == pytest.approx(0.5) and choice.entry == {"lr": 0.01}
    assert scores_on_test(choice.ranking[0].run, A)["balanced_accuracy"] == pytest.approx(0.6)


def test_ranking_shows_test_for_the_chosen_only():
    base = params_with()
    shown = table(base, revision("main", base, {A: (0.5, 0.123)}), [revision("high-lr", params_with(lr=0.01),
                                                                             {A: (0.8, 0.456)})])
    _, (choice, _) = select(shown, (A, B), "balanced_accuracy")
    text = ranking_text(choice, "balanced_accuracy", scores_on_test(choice.ranking[0].run, A))
    assert "0.456" in text and "0.123" not in text and "high-lr" in text.splitlines()[2]


def test_ties_go_to_the_lower_val_log_loss_then_the_baseline():
    base = params_with()
    shown = table(base, revision("main", base, {A: (0.7, 0.1, 0.9)}), [
        revision("a-exp", params_with(lr=0.01), {A: (0.7, 0.9, 0.8)}),
        revision("b-exp", params_with(lr=0.002), {A: (0.7, 0.9, 0.9)}),
    ])
    _, (choice,) = select(shown, (A,), "balanced_accuracy")
    assert [c.run.name for c in choice.ranking] == ["a-exp", "main", "b-exp"]


def test_lower_is_better_metrics_are_minimised():
    base = params_with()
    shown = table(base, revision("main", base, {A: (0.7, 0.1, 0.9)}), [
        revision("exp", params_with(lr=0.01), {A: (0.5, 0.9, 0.4)})])
    _, (choice,) = select(shown, (A,), "log_loss")
    assert choice.ranking[0].run.name == "exp"


def test_runs_with_other_params_failed_or_queued_are_left_out():
    base = params_with()
    unchanged = copy.deepcopy(base)
    failed = {**revision("failed", params_with(lr=0.5), {A: (0.99, 0.1)}), "error": {"msg": "boom"}}
    queued = {**revision("queued", params_with(lr=0.4), {}), "data": {"params": {}, "metrics": {}}}
    shown = table(base, revision("main", base, {A: (0.5, 0.5)}), [
        revision("other-seed", params_with(seed=7, lr=0.3), {A: (0.95, 0.1)}), failed, queued,
        revision("kept", params_with(lr=0.01), {A: (0.6, 0.5)})])
    runs, (choice,) = select(shown, (A,), "balanced_accuracy")
    assert {run.name for run in runs} == {"main", "kept"}
    assert choice.ranking[0].run.name == "kept" and base == unchanged


def test_same_setting_is_ranked_once():
    base = params_with()
    shown = table(base, revision("main", base, {A: (0.5, 0.5), B: (0.5, 0.5)}), [
        revision("tune-b", {**params_with(), "tune": {**base["tune"], B: {"lr": 0.01}}}, {A: (0.5, 0.5), B: (0.6, 0.5)})])
    _, (choice_a, choice_b) = select(shown, (A, B), "balanced_accuracy")
    assert [c.run.name for c in choice_a.ranking] == ["main"] and choice_a.entry is None
    assert choice_b.entry == {"lr": 0.01}


def test_the_written_entries_give_each_backbone_the_chosen_params(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    workspace = yaml.safe_load(path.read_text())
    varied = copy.deepcopy(workspace)
    varied["epochs"], varied["tune"][A] = 3, {"head": {"dropout": 0.5}}
    shown = table(workspace, revision("main", workspace, {A: (0.5, 0.5)}), [revision("exp", varied, {A: (0.9, 0.1)})])
    _, (choice,) = select(shown, (A,), "balanced_accuracy")
    write_tune(path, {A: nested(choice.entry)}, {"at": "2026-12-05 14:50 UTC", "metric": "val.balanced_accuracy",
                                                "experiments": 2})
    written = load_params(path).for_backbone(A)
    assert (written.epochs, written.head.dropout) == (3, 0.5)
    assert tuned_values(yaml.safe_load(path.read_text()), A) == tuned_values(varied, A)
    before, after = (ROOT / "params.yaml").read_text().splitlines(), path.read_text().splitlines()
    changed = [index for index, (old, new) in enumerate(zip(before, after)) if old != new]
    assert len(before) == len(after) and [after[index].split(":")[0].strip() for index in changed] == ["selected", A]


def test_write_tune_replaces_block_entries_as_dvc_writes_them(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("lr: 0.001  # shared\ntune:\n  selected:   # how\n  A:\n    lr: 0.5\n    head:\n      dropout: 0.2\n"
                    "  # a comment\n  B: {lr: 0.5}   # trailing\nz: [1, 2]\n")
    write_tune(path, {"A": {"epochs": 2}, "B": {}}, {"at": "now", "metric": "val.accuracy", "experiments": 1})
    assert path.read_text() == ("lr: 0.001  # shared\ntune:\n  selected: {at: now, metric: val.accuracy, experiments: 1}"
                                "   # how\n  A: {epochs: 2}\n  # a comment\n  B: {}   # trailing\nz: [1, 2]\n")


def test_write_tune_names_a_missing_entry(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("tune:\n  selected: null\n  A: {}\n")
    with pytest.raises(Exception, match="tune has no entry for B"):
        write_tune(path, {"B": {}}, {"at": "now", "metric": "m", "experiments": 1})


def test_describe_selection():
    raw = params_with()
    assert describe_selection(parse_params(raw)) == ""
    raw["tune"]["selected"] = {"at": "2026-12-05 14:50 UTC", "metric": "val.balanced_accuracy", "experiments": 5}
    raw["tune"][A] = {"lr": 0.01}
    text = describe_selection(parse_params(raw))
    assert "val.balanced_accuracy" in text and "5 runs" in text and "2026-12-05 14:50 UTC" in text
    assert f"{A} `lr` 0.01" in text and f"{B} the shared values" in text


def test_workspace_row_is_not_a_run():
    base = params_with()
    shown = table(base, revision("main", base, {A: (0.5, 0.5)}), [])
    shown[0]["data"]["metrics"] = {f"metrics/eval/{A}.json": evaluation(0.99, 0.99)}
    assert [run.name for run in runs_of(shown)] == ["main"]


def test_choose_without_val_metrics_leaves_the_entry_alone():
    base = params_with()
    runs = runs_of(table(base, revision("main", base, {A: (0.5, 0.5)}), []))
    runs[0].metrics[f"metrics/eval/{A}.json"].pop("val")
    assert choose(runs, base, A, "balanced_accuracy").entry is None


def test_select_command_prints_the_ranking_and_writes_params(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    workspace = yaml.safe_load((tmp_path / "params.yaml").read_text())
    shown = table(workspace, revision("main", workspace, {A: (0.5, 0.5)}),
                  [revision("exp", {**workspace, "fine_tune_lr": 0.001}, {A: (0.9, 0.1)})])
    monkeypatch.setattr(select_command, "experiments", lambda root: shown)
    assert cli(["select"]) == 0
    out = capsys.readouterr().out
    assert "chosen: exp -> tune.MobileNetV3Small: fine_tune_lr 0.001" in out and "VGG19: no run has val" in out
    params = load_params(tmp_path / "params.yaml")
    assert params.for_backbone(A).fine_tune_lr == 0.001 and params.tune.selected.experiments == 2
    assert params.tune.selected.metric == "val.balanced_accuracy" and params.fine_tune_lr == 0.0001


def test_select_command_refuses_a_bad_metric_and_no_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setattr(select_command, "experiments", lambda root: [])
    assert cli(["select", "--metric", "f1"]) == 1 and "--metric f1: not a val metric" in capsys.readouterr().err
    assert cli(["select"]) == 1 and "no run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["train", "VGG19", "--metric", "accuracy"])


def test_an_override_that_loses_goes_back_to_the_shared_value():
    shared = params_with()
    overridden = {**shared, "tune": {**shared["tune"], A: {"lr": 0.01}}}
    shown = table(overridden, revision("main", overridden, {A: (0.5, 0.5)}), [revision("shared", shared, {A: (0.6, 0.5)})])
    _, (choice,) = select(shown, (A,), "balanced_accuracy")
    assert choice.entry == {}


def test_report_says_how_training_params_were_chosen(tmp_path):
    def tuning_of(raw: dict) -> tuple[str, str]:
        origin = provenance(parse_params(raw), "data/raw/demo", tmp_path / "dvc.lock", True, {})
        return report.tuning(origin), report.produced_by(origin)

    raw = params_with()
    assert tuning_of(raw)[0] == ""  # shared values throughout: nothing to say
    raw["tune"][A] = {"lr": 0.01, "head": {"units": [64]}}
    by_hand, produced = tuning_of(raw)
    assert "by hand" in by_hand and f"{A} `lr` 0.01, `head.units` [64]" in by_hand
    assert f"- `tune.{A}`: `lr` 0.01, `head.units` [64]" in produced and f"tune.{B}" not in produced
    raw["tune"]["selected"] = {"at": "2026-12-05 14:50 UTC", "metric": "val.balanced_accuracy", "experiments": 5}
    selected, _ = tuning_of(raw)
    assert selected.startswith("Training params were chosen per backbone on the val split") and "5 runs" in selected
