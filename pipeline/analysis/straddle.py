"""The audit's check that does not trust the found subjects: slices as close to another split as to their own subject.

Shuffled labels are drawn per found subject, so a true subject that dedupe cut in two gets two
labels and its leak is invisible to them. The pixels are not: neighbouring slices of one subject
are far more alike than slices of two. For every original, its nearest original of the same
class in another split is compared with its nearest in its own found subject; when the other
split's is at least as close, the image looks like the end of a subject whose next slice is on
the other side: it is flagged, with that image named. Both ends of a cut are checked (the test
side and the train side), as the slice across the cut is as close as the slice on its own side
about half the time.

How many flags an honest split gives is read from the archive itself: the same comparison within
train (each train original's nearest original of another found subject in train against its
nearest in its own) gives k of m train originals where another subject's slice beats a slice's
own neighbour with nothing leaking (the ends of subjects, where slices change fastest). That
rate is itself an estimate: k = 0 of m says the honest rate is small, not 0, and reading it as 0
made one honest flag fail the check (two archives of the subjects sweep, BENCHMARKS.md). So the
flags of an honest split are taken as beta-binomial: n draws at a rate whose uncertainty is the
Jeffreys posterior Beta(k + 1/2, m - k + 1/2), and the check fails past its upper 1 - ALPHA
quantile (6 flags when k = 0 and n is up to about 1.5 m, as on the demo).
"""

from pathlib import Path

import numpy as np
from scipy.stats import betabinom

from pipeline.core.errors import PipelineError

ALPHA = 0.01  # the chance that an honest split fails the check
EXAMPLES = 10  # flagged images named in metrics/audit.json and in the error


def straddling_images(views: np.ndarray, paths: list[str], labels: list[str], groups: list[str],
                      splits: list[str]) -> dict:
    """Originals whose nearest original in another split is as close as their own subject's nearest.

    `views`: unit-norm pixel views (`fingerprint.upright_views`), a row per original.
    """
    groups, splits = np.asarray(groups), np.asarray(splits)
    own, beyond, within_train = (np.full(len(paths), -np.inf) for _ in range(3))
    nearest_across = np.zeros(len(paths), int)
    for label in sorted(set(labels)):  # a subject has one class: compare within each
        rows = np.flatnonzero(np.asarray(labels) == label)
        similarity = views[rows] @ views[rows].T
        np.fill_diagonal(similarity, -np.inf)
        same_group = groups[rows, None] == groups[None, rows]
        same_split = splits[rows, None] == splits[None, rows]
        own[rows] = np.where(same_group, similarity, -np.inf).max(axis=1)
        across = np.where(~same_split, similarity, -np.inf)
        nearest_across[rows] = rows[across.argmax(axis=1)]
        beyond[rows] = across.max(axis=1)
        within_train[rows] = np.where(same_split & ~same_group, similarity, -np.inf).max(axis=1)
    train = (splits == "train") & np.isfinite(own)
    evaluated = np.isfinite(own)
    honest, trials = int(np.sum(within_train[train] >= own[train])), int(train.sum())
    rate = honest / trials if trials else 0.0
    flagged = np.flatnonzero(evaluated & (beyond >= own))
    bound = int(betabinom.ppf(1 - ALPHA, int(evaluated.sum()), honest + 0.5, trials - honest + 0.5))
    return {
        "checked": int(evaluated.sum()),
        "flagged": len(flagged),
        "honest_rate": round(rate, 4),
        "bound": bound,
        "alpha": ALPHA,
        "passed": len(flagged) <= bound,
        "examples": {paths[i]: {"nearest_in_another_split": paths[nearest_across[i]],
                                "similarity": round(float(beyond[i]), 4),
                                "own_subject_nearest": round(float(own[i]), 4)}
                     for i in flagged[np.argsort(own[flagged] - beyond[flagged], kind="stable")][:EXAMPLES]},
    }


def check_straddling(report: dict, metrics_path: Path) -> None:
    """Stop the stage when more images look like ends of straddling subjects than an honest split gives."""
    if not report["passed"]:
        named = "; ".join(f"{path} ~ {match['nearest_in_another_split']}"
                          for path, match in report["examples"].items())
        raise PipelineError(
            f"leakage audit failed: {report['flagged']} of {report['checked']} originals are as close "
            f"to an original in another split as to their own subject's nearest (an honest split gives at most "
            f"{report['bound']} at rate {report['honest_rate']}): a subject is likely cut in two, {named}; "
            f"see {metrics_path}"
        )
