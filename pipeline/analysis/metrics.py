"""Classification metrics over class probabilities: per image, per subject, and subject-bootstrap intervals.

Labels are class indices in the order of the classes; probabilities are an (n, n_classes)
array whose rows sum to 1. The quadratic weighted kappa (`qwk`) is scored only when the
classes are ordinal (`ordinal=True`): on unordered classes its distances mean nothing. A
class with no true example leaves its recall, F1 and ROC AUC undefined: those are None (or
left out of macro averages), never a guess. The subject bootstrap draws subjects within their
class and scores every resample at once from sums over each subject's images; its intervals are expanded
percentile intervals, which keep closer to their level on few subjects than plain percentiles.
"""

import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_array
from scipy.stats import norm, t
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

ECE_BINS = 15
CHUNK_CELLS = 2**22  # the subject bootstrap scores resamples in chunks of at most this many floats per array (32 MB)
LEVEL = 0.95  # of every interval
CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "log_loss", "ece")
ORDINAL_METRICS = ("qwk",)
log = logging.getLogger(__name__)


def ci_metrics(ordinal: bool) -> tuple[str, ...]:
    """The headline metrics that get subject-bootstrap intervals: QWK too when the classes are ordinal."""
    return CI_METRICS + ORDINAL_METRICS if ordinal else CI_METRICS


def present_classes(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Indices of the classes with at least one true example."""
    return np.flatnonzero(np.bincount(labels, minlength=n_classes))


def class_roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class; NaN for a class absent from `labels` (all NaN if fewer than two are present)."""
    n_classes = probabilities.shape[1]
    present = present_classes(labels, n_classes)
    auc = np.full(n_classes, np.nan)
    if len(present) >= 2:
        onehot = np.eye(n_classes)[labels]
        auc[present] = roc_auc_score(onehot[:, present], probabilities[:, present], average=None)
    return auc


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: mean |accuracy - confidence| over bins ((m-1)/M, m/M] of top-class confidence."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = confidence_bins(probabilities, n_bins)
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(labels))


def confidence_bins(probabilities: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Each image's calibration bin: m - 1 for top-class confidence in ((m-1)/M, m/M]."""
    return np.clip(np.ceil(probabilities.max(axis=1) * n_bins).astype(int) - 1, 0, n_bins - 1)


def headline_metrics(labels: np.ndarray, probabilities: np.ndarray, *, ordinal: bool) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro-F1, macro one-vs-rest ROC AUC, log loss, ECE (and QWK when `ordinal`).

    Balanced accuracy and ROC AUC average over the classes present in `labels`, macro-F1 over
    those present or predicted; a metric that is undefined (ROC AUC with fewer than two classes present) is None.
    """
    n_classes = probabilities.shape[1]
    auc = class_roc_auc(labels, probabilities)
    scores = {
        "roc_auc_ovr": np.nanmean(auc) if np.isfinite(auc).any() else np.nan,
        "log_loss": log_loss(labels, probabilities, labels=np.arange(n_classes)),
        "ece": expected_calibration_error(labels, probabilities),
    }
    return {**prediction_metrics(labels, probabilities.argmax(axis=1), n_classes, ordinal=ordinal),
            **{name: _number(value) for name, value in scores.items()}}


def prediction_metrics(labels: np.ndarray, predicted: np.ndarray, n_classes: int, *,
                       ordinal: bool) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro-F1 (and quadratic weighted kappa when `ordinal`) of predicted indices."""
    everything = np.arange(n_classes)
    with warnings.catch_warnings():  # balanced accuracy averages over the classes in `labels`, as documented
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        scores = {
            "accuracy": accuracy_score(labels, predicted),
            "balanced_accuracy": balanced_accuracy_score(labels, predicted),
            "macro_f1": f1_score(labels, predicted, labels=everything, average="macro", zero_division=np.nan),
        }
        if ordinal:
            scores["qwk"] = cohen_kappa_score(labels, predicted, labels=everything, weights="quadratic")
    return {name: _number(value) for name, value in scores.items()}


def majority_balanced_accuracy(labels: np.ndarray) -> float:
    """Balanced accuracy of always predicting the most common class in `labels`."""
    return float(balanced_accuracy_score(labels, np.full_like(labels, np.bincount(labels).argmax())))


def per_class_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> dict[str, dict]:
    """Precision, recall, F1, support and one-vs-rest ROC AUC of each class; None where undefined."""
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(classes)), zero_division=np.nan
    )
    auc = class_roc_auc(labels, probabilities)
    return {
        name: {
            "precision": _number(precision[i]),
            "recall": _number(recall[i]),
            "f1": _number(f1[i]),
            "support": int(support[i]),
            "roc_auc": _number(auc[i]),
        }
        for i, name in enumerate(classes)
    }


def confusion(labels: np.ndarray, probabilities: np.ndarray) -> list[list[int]]:
    """Confusion matrix over all classes: rows are true classes, columns predicted ones."""
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), labels=np.arange(probabilities.shape[1]))
    return matrix.tolist()


def roc_curves(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """One-vs-rest ROC curve points (class, fpr, tpr) of each class that has true and false examples."""
    frames = []
    for index in present_classes(labels, len(classes)):
        truth = labels == index
        if truth.all():
            continue
        fpr, tpr, _ = roc_curve(truth, probabilities[:, index])
        frames.append(pd.DataFrame({"class": classes[index], "fpr": fpr, "tpr": tpr}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["class", "fpr", "tpr"])


def subject_level(subjects: np.ndarray, labels: np.ndarray,
                  probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per subject (sorted): its name, its slices' commonest label (ties: lower index), their mean probabilities."""
    names, groups = np.unique(subjects, return_inverse=True)
    counts = np.bincount(groups)
    mean = np.stack([np.bincount(groups, weights=column) for column in probabilities.T], axis=1) / counts[:, None]
    return names, subject_classes(groups, labels), mean


def subject_classes(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each subject's class (subjects numbered 0.. by `groups`): its images' commonest label, ties to the lower index."""
    votes = np.zeros((groups.max() + 1, labels.max() + 1), int)
    np.add.at(votes, (groups, labels), 1)
    return votes.argmax(axis=1)


def single_subject_classes(labels: np.ndarray, subjects: np.ndarray, classes: tuple[str, ...]) -> list[str]:
    """The classes present with exactly one subject: a subject bootstrap cannot vary their scores."""
    subjects_per_class = Counter(label for label, _ in set(zip(labels.tolist(), subjects.tolist())))
    return [name for index, name in enumerate(classes) if subjects_per_class[index] == 1]


def expanded_tail(subjects: int, strata: int) -> float:
    """The share of resamples left out below (and above) a LEVEL interval: Hesterberg's expanded percentile interval
    ("What teachers should know about the bootstrap", 2015; R's resample::ExpandProbs). A percentile interval of a
    mean is about z times a deviation with divisor n where Student's is t(n - 1) times s, so on few subjects it is too
    narrow; its tails move out to where the normal quantile is sqrt(n / (n - 1)) t(n - 1). Subjects drawn within
    `strata` classes have subjects - strata degrees of freedom, which take the place of n - 1; under one, the
    resamples' whole range."""
    freedom = subjects - strata
    if freedom < 1:
        return 0.0
    return float(norm.sf(math.sqrt((freedom + 1) / freedom) * t.ppf(1 - (1 - LEVEL) / 2, freedom)))


def interval_bounds(values: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """(2, ...) low and high bounds of the expanded percentile interval of resampled `values` (resamples along axis
    0), for subjects drawn within `strata` (one entry per subject)."""
    tail = expanded_tail(len(strata), len(np.unique(strata)))
    return np.percentile(values, [100 * tail, 100 * (1 - tail)], axis=0)


def stratified_draws(strata: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(resamples, subjects) counts of how often each subject is drawn: a stratum of n subjects gets n draws
    with replacement from its own subjects in every resample (strata in ascending order, one generator)."""
    rng = np.random.default_rng(seed)
    draws = np.zeros((n_resamples, len(strata)), np.int32)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        n = len(members)
        picks = rng.integers(n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
        draws[:, members] = np.bincount(picks.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)
    return draws


@dataclass(frozen=True)
class SubjectSums:
    """Sums over each subject's images (one row per subject) that the headline metrics of a resample are made of.

    For the one-vs-rest ROC AUC, each class's distinct scores of its true images ("positions") are listed class
    after class: `positives` counts a subject's true images at each position, `negatives` its other images in
    the gap below each position (column 2j) and at it (column 2j + 1); `positions` are where each class starts.
    """

    truths: np.ndarray  # (subjects, classes) images of each true class
    predictions: np.ndarray  # (subjects, classes) images predicted as each class
    hits: np.ndarray  # (subjects, classes) images of each true class predicted right
    kappa: np.ndarray  # (subjects, 5) label, label², predicted, predicted², (label - predicted)² (class indices)
    losses: np.ndarray  # (subjects,) log loss
    calibration: np.ndarray  # (subjects, ECE_BINS) right minus confidence in each confidence bin
    positives: csr_array
    negatives: csr_array
    positions: np.ndarray  # (classes + 1,)


def subject_sums(groups: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> SubjectSums:
    """`SubjectSums` of images numbered by subject (`groups`, 0..) with their labels and class probabilities."""
    n_subjects, n_classes = groups.max() + 1, probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    moments = np.column_stack([labels, labels**2, predicted, predicted**2, (labels - predicted) ** 2]).astype(float)
    eps = np.finfo(probabilities.dtype).eps  # scikit-learn's log_loss clips the probabilities to [eps, 1 - eps]
    losses = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1 - eps))
    bins = confidence_bins(probabilities)
    positives, negatives, positions = _rank_sums(groups, labels, probabilities)
    return SubjectSums(
        truths=per_subject(groups, labels, n_classes), predictions=per_subject(groups, predicted, n_classes),
        hits=per_subject(groups, labels, n_classes, correct),
        kappa=np.stack([np.bincount(groups, weights=column, minlength=n_subjects) for column in moments.T], axis=1),
        losses=np.bincount(groups, weights=losses, minlength=n_subjects),
        calibration=per_subject(groups, bins, ECE_BINS, correct - probabilities.max(axis=1)),
        positives=positives, negatives=negatives, positions=positions,
    )


def per_subject(groups: np.ndarray, columns: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(subjects, width) sums of `weights` (counts without them) over each subject's images in each column."""
    n_subjects = groups.max() + 1
    return np.bincount(groups * width + columns, weights=weights, minlength=n_subjects * width).reshape(n_subjects, width)


def _rank_sums(groups: np.ndarray, labels: np.ndarray,
               probabilities: np.ndarray) -> tuple[csr_array, csr_array, np.ndarray]:
    """`SubjectSums`' positives, negatives and positions (see there)."""
    n_subjects = groups.max() + 1
    positive_cells, negative_cells, positions = [], [], [0]
    for index, scores in enumerate(probabilities.T):
        truth = labels == index
        distinct = np.unique(scores[truth])
        start = positions[-1]
        positive_cells.append((groups[truth], start + np.searchsorted(distinct, scores[truth])))
        gap = np.searchsorted(distinct, scores[~truth])
        at = distinct[np.minimum(gap, len(distinct) - 1)] == scores[~truth] if len(distinct) else False
        column = 2 * gap + at
        kept = column < 2 * len(distinct)  # negatives above the top position beat no positive
        negative_cells.append((groups[~truth][kept], 2 * start + column[kept]))
        positions.append(start + len(distinct))

    def counts(cells: list[tuple[np.ndarray, np.ndarray]], width: int) -> csr_array:
        rows, columns = (np.concatenate(parts) for parts in zip(*cells))
        return csr_array((np.ones(len(rows)), (rows, columns)), shape=(n_subjects, width))  # duplicates add up

    return counts(positive_cells, positions[-1]), counts(negative_cells, 2 * positions[-1]), np.array(positions)


def resample_metrics(sums: SubjectSums, draws: np.ndarray) -> dict[str, np.ndarray]:
    """`headline_metrics` (QWK included) of each resample (row of `draws`: how often each subject is drawn), NaN
    where undefined: each image counts as often as its subject is drawn."""
    draws = draws.astype(float)
    truths, predictions, hits = draws @ sums.truths, draws @ sums.predictions, draws @ sums.hits
    images = truths.sum(axis=1)
    present = truths > 0
    label, label2, guess, guess2, observed = (draws @ sums.kappa).T
    expected = (images * (label2 + guess2) - 2 * label * guess) / images  # sum of (i - j)² n_i m_j / n
    auc = _class_auc(sums, draws, truths, images)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * hits / (truths + predictions)  # NaN where a class is neither true nor predicted
        return {
            "accuracy": hits.sum(axis=1) / images,
            "balanced_accuracy": balanced_accuracies(truths, hits),
            "macro_f1": np.nanmean(f1, axis=1),
            "qwk": np.where(expected > 0, 1 - observed / expected, np.nan),
            "roc_auc_ovr": np.where(present.sum(axis=1) >= 2,
                                    np.where(present, auc, 0).sum(axis=1) / present.sum(axis=1), np.nan),
            "log_loss": draws @ sums.losses / images,
            "ece": np.abs(draws @ sums.calibration).sum(axis=1) / images,
        }


def _class_auc(sums: SubjectSums, draws: np.ndarray, truths: np.ndarray, images: np.ndarray) -> np.ndarray:
    """(resamples, classes) one-vs-rest ROC AUC by weighted ranks (ties count one half); NaN for absent classes."""
    positives, negatives = draws @ sums.positives, draws @ sums.negatives
    wins = np.zeros(truths.shape)
    for index, (start, end) in enumerate(zip(sums.positions[:-1], sums.positions[1:])):
        gaps = negatives[:, 2 * start:2 * end]
        below = np.cumsum(gaps, axis=1)[:, 0::2]  # negatives under each position: the gaps up to it and the ties under it
        wins[:, index] = (positives[:, start:end] * (below + gaps[:, 1::2] / 2)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return wins / (truths * (images[:, None] - truths))


def balanced_accuracies(truths: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Balanced accuracy of each resample from its (resamples, classes) true images and hits: mean recall over
    the classes it holds."""
    present = truths > 0
    return np.divide(hits, truths, out=np.zeros(hits.shape), where=present).sum(axis=1) / present.sum(axis=1)


def subject_bootstrap(labels: np.ndarray, probabilities: np.ndarray, subjects: np.ndarray, n_resamples: int,
                      seed: int, *, ordinal: bool, metrics: tuple[str, ...] | None = None
                      ) -> tuple[dict[str, dict | None], int]:
    """95% expanded percentile intervals ({low, high}: `interval_bounds`) of per-image `metrics` over subjects
    resampled with replacement within their class (`stratified_draws` of `subject_classes`), so every class keeps its
    subjects.

    `metrics` defaults to `ci_metrics(ordinal)`. A resample is used if every metric is defined on it (all are,
    unless the test set holds fewer than two subjects' classes); returns the intervals (None if no resample
    was used) and how many were used.
    """
    metrics = ci_metrics(ordinal) if metrics is None else metrics
    _, groups = np.unique(subjects, return_inverse=True)
    sums = subject_sums(groups, labels, probabilities)
    strata = subject_classes(groups, labels)
    draws = stratified_draws(strata, n_resamples, seed)
    chunk = max(1, CHUNK_CELLS // max(len(draws.T), sums.negatives.shape[1]))
    values = np.concatenate([np.column_stack([scores[name] for name in metrics]) for scores in
                             (resample_metrics(sums, draws[start:start + chunk])
                              for start in range(0, n_resamples, chunk))])
    used = values[np.isfinite(values).all(axis=1)]
    if not len(used):
        return dict.fromkeys(metrics), 0
    bounds = interval_bounds(used, strata)
    intervals = {name: {"low": float(bounds[0, i]), "high": float(bounds[1, i])} for i, name in enumerate(metrics)}
    return intervals, len(used)


def score_predictions(labels: np.ndarray, probabilities: np.ndarray, subjects: np.ndarray, classes: tuple[str, ...],
                      n_resamples: int, seed: int, *, ordinal: bool) -> dict:
    """Metrics per image, per subject, and subject-bootstrap 95% intervals: what evaluate reports for a model."""
    _, subject_labels, subject_probabilities = subject_level(subjects, labels, probabilities)
    intervals, used = subject_bootstrap(labels, probabilities, subjects, n_resamples, seed, ordinal=ordinal)
    present = present_classes(labels, len(classes))
    absent = [name for index, name in enumerate(classes) if index not in present]
    single = single_subject_classes(labels, subjects, classes)
    return {
        **headline_metrics(labels, probabilities, ordinal=ordinal),
        "per_class": per_class_metrics(labels, probabilities, classes),
        "confusion_matrix": confusion(labels, probabilities),
        "subject": {
            **headline_metrics(subject_labels, subject_probabilities, ordinal=ordinal),
            "confusion_matrix": confusion(subject_labels, subject_probabilities),
        },
        "ci95": intervals,
        "ci95_resamples": {"drawn": n_resamples, "used": used},
        "ci95_single_subject_classes": single,
        "classes": list(classes),
        "absent_classes": absent,
        "test_images": len(labels),
        "test_subjects": len(subject_labels),
        "chance_balanced_accuracy": 1 / len(classes),
        "majority_balanced_accuracy": majority_balanced_accuracy(labels),
    }


def validation_scores(predictions: pd.DataFrame, classes: tuple[str, ...], n_resamples: int, seed: int, *,
                      ordinal: bool) -> dict:
    """The headline metrics of the val split's predictions, with their subject-bootstrap intervals: what a model
    is chosen and tuned on, so that the test split is looked at once."""
    labels, subjects = predictions["label_index"].to_numpy(), predictions["subject"].to_numpy()
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy()
    intervals, used = subject_bootstrap(labels, probabilities, subjects, n_resamples, seed, ordinal=ordinal)
    return {**headline_metrics(labels, probabilities, ordinal=ordinal), "ci95": intervals,
            "ci95_resamples": {"drawn": n_resamples, "used": used}, "images": len(labels),
            "subjects": len(np.unique(subjects))}


def evaluate_predictions(predictions: pd.DataFrame, classes: tuple[str, ...], n_resamples: int, seed: int, *,
                         ordinal: bool) -> dict:
    """`score_predictions` of a table of predictions (label_index, subject, prob_<class>), its caveats logged."""
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy()
    scores = score_predictions(predictions["label_index"].to_numpy(), probabilities, predictions["subject"].to_numpy(),
                               classes, n_resamples, seed, ordinal=ordinal)
    log_caveats(scores)
    return scores


def log_caveats(scores: dict) -> None:
    """Log what `score_predictions`' scores cannot show about the test split."""
    if scores["absent_classes"]:
        log.warning("no test images of %s: their recall, F1 and ROC AUC are undefined and left out of the "
                    "macro averages", ", ".join(scores["absent_classes"]))
    log.info("subject bootstrap: %d of %d resamples, subjects drawn within their class, define every interval",
             scores["ci95_resamples"]["used"], scores["ci95_resamples"]["drawn"])
    if scores["ci95_single_subject_classes"]:
        log.warning("one test subject of %s: the 95%% intervals cannot show how much another subject of "
                    "these classes would change the scores", ", ".join(scores["ci95_single_subject_classes"]))


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
