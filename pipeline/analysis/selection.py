"""Each backbone's training params picked on validation among DVC's experiments (over k folds, on the folds' mean val
scores); test metrics never take part."""

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core import paths
from pipeline.core.params import TUNABLE, Params, tuned_values

METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "roc_auc_ovr", "qwk", "log_loss", "ece")  # evaluate's, on val
LOWER_IS_BETTER = ("log_loss", "ece")
TIE_BREAK = "log_loss"  # equal on the metric: the lower val log loss wins, then the baseline commit, then by name
UNCOMPARED = ("tune", "backbones")  # params whose differences do not make two runs' val scores incomparable


@dataclass(frozen=True)
class Run:
    """One row of `dvc exp show`: a baseline commit or an experiment, with params.yaml and metrics as DVC read them."""

    name: str
    baseline: bool  # a commit rather than an experiment: wins ties, keeping the committed params
    params: dict
    metrics: dict  # metrics file path -> its content


@dataclass(frozen=True)
class Candidate:
    """A backbone's effective training params in one run, and its val metrics there."""

    run: Run
    values: dict[str, Any]  # TUNABLE key -> value
    val: dict[str, Any]


@dataclass(frozen=True)
class Choice:
    """A backbone's ranking on val (best first, one row per distinct setting) and the tune entry it leads to."""

    backbone: str
    ranking: list[Candidate]
    varied: tuple[str, ...]  # the TUNABLE keys that differ among the ranked settings
    entry: dict[str, Any] | None  # tune.<backbone>'s new dotted keys and values; None: left alone (no val metrics
    # in any run, or the best setting already in force)


def runs_of(shown: list[dict]) -> list[Run]:
    """The baseline commits and their finished experiments in `dvc exp show --json`'s list; the workspace left out."""
    runs = []
    for baseline in shown:
        if baseline.get("rev") == "workspace":
            continue
        revisions = [baseline, *(rev for exp in baseline.get("experiments") or [] for rev in exp.get("revs") or [])]
        for revision in revisions:
            data = revision.get("data") or {}
            if revision.get("error") or not data.get("metrics"):
                continue
            params = ((data.get("params") or {}).get(str(paths.PARAMS)) or {}).get("data") or {}
            metrics = {path: content.get("data") or {} for path, content in data["metrics"].items()}
            runs.append(Run(revision.get("name") or str(revision.get("rev"))[:7], revision is baseline, params, metrics))
    return runs


def workspace_params(shown: list[dict]) -> dict:
    """params.yaml of the workspace row of `dvc exp show --json`'s list (empty without one)."""
    row = next((entry for entry in shown if entry.get("rev") == "workspace"), {})
    return (((row.get("data") or {}).get("params") or {}).get(str(paths.PARAMS)) or {}).get("data") or {}


def comparable(params: dict, reference: dict) -> bool:
    """Whether two params mappings agree on everything but the TUNABLE keys, `tune` and `backbones`."""
    return _without_tunables(params) == _without_tunables(reference)


def _without_tunables(params: dict) -> dict:
    kept = copy.deepcopy({key: value for key, value in params.items() if key not in UNCOMPARED})
    for key in TUNABLE:
        *parents, last = key.split(".")
        node = kept
        for parent in parents:
            node = node.get(parent)
            if not isinstance(node, dict):
                break
        else:
            node.pop(last, None)
    return kept


def val_metrics(run: Run, backbone: str) -> dict[str, Any]:
    """A backbone's val metrics in a run (empty where it has none): the only metrics a choice reads."""
    return fold_mean(run, backbone, "val")


def fold_mean(run: Run, backbone: str, part: str | None) -> dict[str, Any]:
    """A backbone's metrics/eval in a run, under `part` ("val") or at the top level (test, for None): over the run's
    `split.folds` folds, each number the mean of the folds' (as compare picks its reference on the folds' mean val);
    empty where a fold has none."""
    folds = range(((run.params.get("split") or {}).get("folds")) or 1)
    records = [(run.metrics.get(str(paths.eval_metrics(backbone, fold))) or {}) for fold in folds]
    records = [(record.get(part) or {}) if part else record for record in records]
    if not all(records):
        return {}
    if len(records) == 1:
        return records[0]
    return {name: float(np.mean([record[name] for record in records])) for name in records[0]
            if all(_is_number(record.get(name)) for record in records)}


def rank_key(candidate: Candidate, metric: str) -> tuple:
    """Sort key, best first: the metric (its better direction), then the lower val log loss."""
    score = candidate.val[metric]
    tie = candidate.val.get(TIE_BREAK, float("inf"))
    return (score if metric in LOWER_IS_BETTER else -score, tie)


def select(shown: list[dict], backbones: tuple[str, ...], metric: str) -> tuple[list[Run], list[Choice]]:
    """From `dvc exp show --json`'s list: the runs with val metrics whose other params match the workspace's, and
    each backbone's choice among them."""
    reference = workspace_params(shown)
    runs = [run for run in runs_of(shown)
            if comparable(run.params, reference) and any(val_metrics(run, name) for name in backbones)]
    return runs, [choose(runs, reference, name, metric) for name in backbones]


def choose(runs: list[Run], reference: dict, backbone: str, metric: str) -> Choice:
    """Rank on val the distinct settings of a backbone's training params among the runs; the new tune entry holds the
    best one's values that differ from `reference`'s (the workspace's) top-level ones."""
    candidates, seen = [], set()
    for run in sorted(runs, key=lambda run: (not run.baseline, run.name)):
        values, val = tuned_values(run.params, backbone), val_metrics(run, backbone)
        key = repr(sorted(values.items()))
        if metric not in val or key in seen:
            continue
        seen.add(key)
        candidates.append(Candidate(run, values, val))
    ranking = sorted(candidates, key=lambda candidate: rank_key(candidate, metric))  # stable: run order breaks ties
    varied = tuple(key for key in TUNABLE if len({repr(c.values[key]) for c in ranking}) > 1)
    if not ranking:
        return Choice(backbone, [], (), None)
    best = ranking[0].values
    if best == tuned_values(reference, backbone):
        return Choice(backbone, ranking, varied, None)  # already in force: the entry stays, nothing reruns
    top_level = tuned_values({key: value for key, value in reference.items() if key != "tune"}, backbone)
    return Choice(backbone, ranking, varied, {key: best[key] for key in TUNABLE if best[key] != top_level[key]})


def ranking_text(choice: Choice, metric: str, test: dict[str, Any] | None) -> str:
    """A backbone's ranking on val as plain text; the test metrics of the chosen run alone, when given."""
    if not choice.ranking:
        return f"{choice.backbone}: no run has val metrics for it; its tune entry is left as it is"
    shown = tuple(dict.fromkeys((metric, TIE_BREAK)))
    header = ["rank", "run", *(f"val {name}" for name in shown), *choice.varied]
    rows = [[str(rank), candidate.run.name, *(_number(candidate.val.get(name)) for name in shown),
             *(_number(candidate.values[key]) for key in choice.varied)]
            for rank, candidate in enumerate(choice.ranking, 1)]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = [f"{choice.backbone}: {len(choice.ranking)} setting(s) ranked on val {metric}"
             + (f" (ties: lower val {TIE_BREAK})" if metric != TIE_BREAK else "")]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    chosen = choice.ranking[0].run.name
    if choice.entry is None:
        lines.append(f"  chosen: {chosen}, whose params are in force already: tune.{choice.backbone} left as it is")
    else:
        entry = ", ".join(f"{key} {_number(value)}" for key, value in choice.entry.items()) or "{} (the shared values)"
        lines.append(f"  chosen: {chosen} -> tune.{choice.backbone}: {entry}")
    if test:
        lines.append(f"  its test {metric} (read after choosing, never to choose): {_number(test.get(metric))}")
    return "\n".join(lines)


def scores_on_test(run: Run, backbone: str) -> dict[str, Any]:
    """A backbone's test metrics in a run: the headline figures at the top level of metrics/eval/<backbone>.json (their
    mean over the folds, as `fold_mean`)."""
    content = fold_mean(run, backbone, None)
    return {name: content.get(name) for name in METRICS}


def describe_selection(params: Params) -> str:
    """One or two Markdown sentences on how the backbones' training params were chosen; "" when select never ran."""
    record = params.tune.selected
    if record is None:
        return ""
    chosen = [f"{name} " + (overrides_text(overrides(params, name)) or "the shared values") for name in params.backbones]
    return (f"Training params were chosen per backbone on the val split by `python -m pipeline select` "
            f"({record.at}): the highest {record.metric} among {record.experiments} runs"
            f" (ties: the lower val {TIE_BREAK}); no test metric took part. Chosen: {'; '.join(chosen)}.")


def overrides(params: Params, backbone: str) -> dict[str, Any]:
    """The TUNABLE keys tune.<backbone> sets, dotted, with their values (empty: the shared values throughout)."""
    entry = getattr(params.tune, backbone).model_dump(mode="json", exclude_none=True)
    return {key: value for key, value in tuned_values({"tune": {backbone: entry}}, backbone).items() if value is not None}


def overrides_text(values: dict[str, Any]) -> str:
    """Dotted keys and values as `key` value, comma-separated."""
    return ", ".join(f"`{key}` {_number(value)}" for key, value in values.items())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
