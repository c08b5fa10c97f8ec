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

That count cannot see one subject cut in two: its cut shows in one or two images, as many as an
honest split's alike end slices give. `cut_subjects` looks at pairs of found subjects instead.
"""

from pathlib import Path

import numpy as np
from scipy.stats import betabinom

from pipeline.core.errors import PipelineError

ALPHA = 0.01  # the chance that an honest split fails the check
CONTINUES = 1.4  # a pair of subjects whose chains go on one into the other past this score is one subject cut in two
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


def cut_subjects(views: np.ndarray, paths: list[str], labels: list[str], groups: list[str], splits: list[str]) -> dict:
    """Pairs of found subjects of one class in two splits whose slices go on one into the other as one subject's do.

    A subject is a chain of slices, each next to the slice above and below it. Cut in two, its
    parts' nearest pair across the cut are two neighbouring slices, as close as a step within
    either part (`closeness` = their distance over the longer of their steps to their own nearest,
    about 1), and the slices beside them lie two steps apart, farther than any link on the way
    (`going_on` = their distance over the longest of the three links, about 1.5 to 2). Two
    subjects that are merely alike somewhere (the end slices of two brains, small and plain) are
    alike at neighbouring levels too: the slices beside their nearest pair are about as close as
    the pair (`going_on` about 1), so closeness alone, which an honest split also shows, is not
    evidence. The score is `going_on / closeness`; a pair past CONTINUES fails the audit.
    CONTINUES is read from honest archives of another generator than `synth` (slices 1 to 5 mm
    apart, warps, noise; `benchmarks/subjects_sweep.py`, BENCHMARKS.md): over every pair of true
    subjects of a class, as if each were in a split of its own, the highest score was 1.29 in the
    sweep's 24 archives (1.34 over 576 pairs of 16 archives while the score was chosen), and 0.70
    on the demo's split. A subject cut at a random slice scores past it in 310 of 408 cuts (76%),
    so a cut can still go unseen; one of the demo's train subjects cut in half, in 31 of 31.
    """
    groups, splits, labels = np.asarray(groups), np.asarray(splits), np.asarray(labels)
    found, scores = [], []
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        distance = np.sqrt(np.maximum(2.0 - 2.0 * (views[rows] @ views[rows].T), 0.0))
        members = {group: np.flatnonzero(groups[rows] == group) for group in sorted(set(groups[rows].tolist()))}
        names = [group for group, member in members.items() if len(member) > 1]
        for position, one in enumerate(names):
            for two in names[position + 1:]:
                a, b = members[one], members[two]
                if splits[rows[a[0]]] == splits[rows[b[0]]]:
                    continue
                score, ends = _continuation(distance, a, b)
                scores.append(score)
                if score > CONTINUES:
                    found.append({"subjects": [one, two], "images": [paths[rows[end]] for end in ends],
                                  "score": round(score, 3)})
    found.sort(key=lambda pair: -pair["score"])
    return {"pairs_checked": len(scores), "highest_score": round(max(scores, default=0.0), 3),
            "bound": CONTINUES, "cut": len(found), "passed": not found, "examples": found[:EXAMPLES]}


def _continuation(distance: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[int, int]]:
    """`going_on / closeness` of the rows a and b of `distance` (see `cut_subjects`), and their nearest pair."""
    across = distance[np.ix_(a, b)]
    i, j = np.unravel_index(np.argmin(across), across.shape)
    end_a, end_b = a[i], b[j]
    beside_a = a[np.argsort(distance[end_a, a], kind="stable")[1]]
    beside_b = b[np.argsort(distance[end_b, b], kind="stable")[1]]
    step_a, step_b, join = distance[end_a, beside_a], distance[end_b, beside_b], distance[end_a, end_b]
    closeness = join / max(step_a, step_b)
    going_on = distance[beside_a, beside_b] / max(step_a, step_b, join)
    return float(going_on / max(closeness, 1e-12)), (int(end_a), int(end_b))


def check_cut_subjects(report: dict, metrics_path: Path) -> None:
    """Stop the stage when two found subjects in two splits look like one subject cut in two."""
    if not report["passed"]:
        named = "; ".join(f"{pair['images'][0]} ~ {pair['images'][1]} (score {pair['score']})"
                          for pair in report["examples"])
        raise PipelineError(
            f"leakage audit failed: {report['cut']} of {report['pairs_checked']} pairs of subjects in two splits go on "
            f"one into the other as one subject's slices do (score past {report['bound']}): a subject is likely cut in "
            f"two by its grouping, {named}; see {metrics_path}"
        )
