"""The leakage audit. One fixed, cheap model under three splits, with real and shuffled labels.

The model is logistic regression on standardized cached features (view 0) of `audit.backbone`.
The pool is every cached image: originals and the copies of train sources. The splits:

- `naive`: random per image over originals and copies (the seed study's mistake);
- `originals`: random per image over originals only (neighbouring slices of a subject still leak);
- `subject`: ours, the pipeline's own split as cached (train and val against test), so the audit
  checks exactly the split every backbone was evaluated on, subject-grouping mistakes included.
  A fresh GroupShuffleSplit on the index's subject column could never put one subject on both
  sides, so it would only audit itself.

Shuffled labels give each subject one label drawn uniformly from the classes, independently per
subject (a permutation would make test labels depend on train labels), so no image carries disease
information and, without leakage, test labels are independent of everything the model saw.

Chance interval: under that null, each repeat's test predictions are fixed and independent of the
test subjects' labels, so the null distribution of the mean shuffled-label score over repeats is
exact given the predictions: redraw every test subject's label uniformly, score the same
predictions, average over repeats, `NULL_DRAWS` times. The interval is its central `LEVEL` range. It
is wide with few test subjects because all slices of a subject share one label; a binomial over
images would pretend they were independent and fail honest splits.

Verdict: a score above the interval is leakage; the stage fails when the `subject` split's mean
shuffled-label accuracy is above it (a one-sided test at (1 - LEVEL) / 2 = 2.5%). Leakage can only
lift the score, so one below the interval is an unlucky draw (as likely as a false alarm): it is
reported and logged, and the audit passes. With k folds each fold's split is audited on its own, at
`fold_level(k)` (Bonferroni: 1 - (1 - LEVEL) / k), so that all k together raise a false alarm no more
often than one split does.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.analysis.metrics import prediction_metrics
from pipeline.core.errors import PipelineError
from pipeline.core.files import save_figure, write_csv, write_json
from pipeline.core.params import AuditParams
from pipeline.tables.features import Pool

SPLIT_NAMES = ("naive", "originals", "subject")
DESCRIPTIONS = {
    "naive": "random per image over originals and copies",
    "originals": "random per image over originals only",
    "subject": "ours: the pipeline's split by subject (train and val against test)",
}
SCORES = ("accuracy", "balanced_accuracy")
NULL_DRAWS = 10_000
LEVEL = 0.95
log = logging.getLogger(__name__)


def fold_level(folds: int) -> float:
    """The level of each of `folds` audits (one per fold's split) whose false alarms together stay at 1 - LEVEL."""
    return 1 - (1 - LEVEL) / folds


def run_audit(pool: Pool, n_classes: int, params: AuditParams, seed: int, level: float = LEVEL) -> dict:
    """Scores per split and label condition (mean and std over repeats), chance intervals at `level` and verdicts."""
    with threadpool_limits(1):  # many small fits: threads only contend
        splits = {name: audit_split(pool, name, n_classes, params, [seed, position], level)
                  for position, name in enumerate(SPLIT_NAMES)}
    return {
        "backbone": params.backbone,
        "model": "logistic regression on standardized features",
        "repeats": params.repeats,
        "test_share": params.test_share,
        "level": level,
        "null_draws": NULL_DRAWS,
        "chance": 1 / n_classes,
        "splits": splits,
        "passed": splits["subject"]["verdict"] != "above chance",
    }


def audit_split(pool: Pool, name: str, n_classes: int, params: AuditParams, seed: list[int],
                level: float = LEVEL) -> dict:
    """One split's repeats: a fresh split (random splits) and fresh subject labels each time."""
    subjects, groups = np.unique(pool.rows["subject"], return_inverse=True)
    real = pool.rows["label"].to_numpy()
    scores = {"real": [], "shuffled": []}
    runs, sizes = [], []
    for repeat in range(params.repeats):
        rng = np.random.default_rng([*seed, repeat])
        train, test = split_rows(pool.rows, name, params.test_share, rng)
        labels = {"real": real, "shuffled": rng.integers(n_classes, size=len(subjects))[groups]}
        predicted = {condition: fit_predict(pool.features, values, train, test) for condition, values in labels.items()}
        for condition, values in labels.items():
            metrics = prediction_metrics(values[test], predicted[condition], n_classes, ordinal=False)  # no QWK in SCORES
            scores[condition].append([metrics[score] for score in SCORES])
        runs.append((groups[test], predicted["shuffled"]))
        sizes.append([len(test), len(np.unique(groups[test])), len(np.intersect1d(groups[train], groups[test]))])
    null = chance_null(runs, n_classes, NULL_DRAWS, np.random.default_rng([*seed, params.repeats]))
    result = {condition: summarize(np.array(values)) for condition, values in scores.items()}
    chance = {score: interval(null[:, i], level) for i, score in enumerate(SCORES)}
    observed = result["shuffled"]["accuracy"]
    verdict = ("above chance" if observed > chance["accuracy"]["high"]
               else "below chance" if observed < chance["accuracy"]["low"] else "within chance")
    test_images, test_subjects, shared_subjects = np.mean(sizes, axis=0)
    return {"description": DESCRIPTIONS[name], **result, "chance": chance, "verdict": verdict,
            "test_images": float(test_images), "test_subjects": float(test_subjects),
            "shared_subjects": float(shared_subjects)}


def split_rows(rows: pd.DataFrame, name: str, test_share: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Train and test row numbers of one audit split (see the module docstring)."""
    if name == "subject":
        return np.flatnonzero(rows["split"] != "test"), np.flatnonzero(rows["split"] == "test")
    pool = np.arange(len(rows)) if name == "naive" else np.flatnonzero(rows["kind"] == "original")
    order = rng.permutation(pool)
    n_test = max(1, round(len(pool) * test_share))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def fit_predict(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The audit's fixed model fitted on the train rows; its predictions for the test rows."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(features[train], labels[train]).predict(features[test])


def chance_null(runs: list[tuple[np.ndarray, np.ndarray]], n_classes: int, draws: int,
                rng: np.random.Generator) -> np.ndarray:
    """(draws, 2) accuracy and balanced accuracy, averaged over runs, with each run's test subjects relabelled
    uniformly at random and its predictions (test-subject codes, predicted classes) held fixed."""
    total = np.zeros((draws, 2))
    for groups, predicted in runs:
        _, groups = np.unique(groups, return_inverse=True)
        counts = np.zeros((groups.max() + 1, n_classes))  # test images of each subject predicted as each class
        np.add.at(counts, (groups, predicted), 1)
        onehot = np.eye(n_classes, dtype=bool)[rng.integers(n_classes, size=(draws, len(counts)))]
        correct = np.einsum("dsk,sk->dk", onehot, counts)
        support = np.einsum("dsk,s->dk", onehot, counts.sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.nanmean(np.where(support > 0, correct / support, np.nan), axis=1)
        total += np.stack([correct.sum(axis=1) / len(groups), recall], axis=1)
    return total / len(runs)


def interval(values: np.ndarray, level: float = LEVEL) -> dict[str, float]:
    """The null's mean and central `level` interval."""
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high)}


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation over repeats of (repeats, len(SCORES)) scores."""
    return {key: float(value) for i, name in enumerate(SCORES)
            for key, value in ((name, values[:, i].mean()), (f"{name}_std", values[:, i].std()))}


def log_verdicts(report: dict) -> None:
    """Log each split's scores and verdict, and what a below-chance or a leak-blind result means."""
    for name in SPLIT_NAMES:
        split = report["splits"][name]
        log.info("%s: accuracy real %.3f, shuffled %.3f; chance interval [%.3f, %.3f]: %s", name,
                 split["real"]["accuracy"], split["shuffled"]["accuracy"], split["chance"]["accuracy"]["low"],
                 split["chance"]["accuracy"]["high"], split["verdict"])
    if report["splits"]["subject"]["verdict"] == "below chance":
        log.warning("the split by subject scores below its interval of chance: leakage cannot do that, "
                    "so it is an unlucky draw (a %.1f%% chance without leakage)", 100 * (1 - report["level"]) / 2)
    if report["splits"]["naive"]["verdict"] != "above chance":
        log.warning("the naive split's shuffled-label score is not above chance: this model and these "
                    "features cannot show a leak here, so a pass says little")


def check_audit(report: dict, metrics_path: Path) -> None:
    """Stop the stage when the split by subject's shuffled-label accuracy is above its interval of chance."""
    split = report["splits"]["subject"]
    if split["verdict"] == "above chance":
        chance = split["chance"]["accuracy"]
        raise PipelineError(
            f"leakage audit failed: split by subject, shuffled-label accuracy {split['shuffled']['accuracy']:.3f} "
            f"is above its {report['level']:.0%} interval [{chance['low']:.3f}, {chance['high']:.3f}] "
            f"({report['repeats']} repeats, {split['test_subjects']:.0f} test subjects, "
            f"{split['shared_subjects']:.0f} of them also in train); see {metrics_path}"
        )


def plot_table(report: dict) -> pd.DataFrame:
    """One row per split and label condition: scores, their std over repeats, the chance interval."""
    rows = []
    for name in SPLIT_NAMES:
        split = report["splits"][name]
        for condition in ("real", "shuffled"):
            chance = split["chance"]["accuracy"] if condition == "shuffled" else {}
            rows.append({"condition": f"{name} / {condition}", "split": name, "labels": condition,
                         **split[condition], "chance_low": chance.get("low"), "chance_high": chance.get("high")})
    return pd.DataFrame(rows)


def write_outputs(report: dict, metrics_path: Path, plots_dir: Path) -> None:
    """metrics JSON, the plot table as CSV and a PNG chart of accuracy per condition against chance."""
    write_json(metrics_path, report)
    table = plot_table(report)
    write_csv(plots_dir / "audit.csv", table, float_format="%.4f", lineterminator="\n")
    figure = Figure(figsize=(7, 3.5), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(table))[::-1]
    shuffled = table["labels"] == "shuffled"
    axes.barh(positions[shuffled], table.loc[shuffled, "chance_high"] - table.loc[shuffled, "chance_low"],
              left=table.loc[shuffled, "chance_low"], height=0.7, color="lightgrey",
              label=f"{report['level']:.0%} interval of chance")
    for labels, colour in (("real", "tab:blue"), ("shuffled", "tab:orange")):
        rows = table["labels"] == labels
        axes.errorbar(table.loc[rows, "accuracy"], positions[rows], xerr=table.loc[rows, "accuracy_std"], fmt="o",
                      capsize=4, color=colour, label=f"{labels} labels")
    axes.axvline(report["chance"], color="black", linestyle="--", linewidth=1)
    axes.set_yticks(positions, table["condition"])
    axes.set_xlim(0, 1)
    axes.set_xlabel(f"test accuracy: mean and std of {report['repeats']} repeats")
    axes.set_title(f"Leakage audit on {report['backbone']} features: " + ("passed" if report["passed"] else "FAILED"))
    axes.legend(loc="lower right", fontsize="small")
    save_figure(figure, plots_dir / "audit.png", dpi=100, metadata={"Software": None})  # no version: same bytes
