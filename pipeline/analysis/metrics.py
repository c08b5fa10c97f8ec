"""Classification metrics over class probabilities: per image, per subject, and subject-bootstrap intervals.

Labels are class indices in the order of the classes; probabilities are an (n, n_classes)
array whose rows sum to 1. The quadratic weighted kappa (`qwk`) is scored only when the
classes are ordinal (`ordinal=True`): on unordered classes its distances mean nothing. A
class with no true example leaves its recall, F1 and ROC AUC undefined: those are None (or
left out of macro averages), never a guess.
"""

import logging
import warnings
from collections import Counter

import numpy as np
import pandas as pd
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
CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr")
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
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(labels))


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
    votes = np.zeros((len(names), probabilities.shape[1]), int)
    np.add.at(votes, (groups, labels), 1)
    return names, votes.argmax(axis=1), mean


def single_subject_classes(labels: np.ndarray, subjects: np.ndarray, classes: tuple[str, ...]) -> list[str]:
    """The classes present with exactly one subject: a subject bootstrap cannot vary their scores."""
    subjects_per_class = Counter(label for label, _ in set(zip(labels.tolist(), subjects.tolist())))
    return [name for index, name in enumerate(classes) if subjects_per_class[index] == 1]


def subject_bootstrap(labels: np.ndarray, probabilities: np.ndarray, subjects: np.ndarray, n_resamples: int,
                      seed: int, *, ordinal: bool, metrics: tuple[str, ...] | None = None
                      ) -> tuple[dict[str, dict | None], int]:
    """95% percentile intervals ({low, high}) of per-image `metrics` over subjects resampled with replacement.

    `metrics` defaults to `ci_metrics(ordinal)`.

    A resample is used only if it holds every class the full set holds and every metric is
    defined on it; returns the intervals (None if no resample was used) and how many were used.
    """
    metrics = ci_metrics(ordinal) if metrics is None else metrics
    _, groups = np.unique(subjects, return_inverse=True)
    members = [np.flatnonzero(groups == group) for group in range(groups.max() + 1)]
    n_present = len(present_classes(labels, probabilities.shape[1]))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        rows = np.concatenate([members[group] for group in rng.integers(len(members), size=len(members))])
        if len(present_classes(labels[rows], probabilities.shape[1])) < n_present:
            continue
        scores = headline_metrics(labels[rows], probabilities[rows], ordinal=ordinal)
        if all(scores[name] is not None for name in metrics):
            values.append([scores[name] for name in metrics])
    if not values:
        return dict.fromkeys(metrics), 0
    bounds = np.percentile(np.array(values), [2.5, 97.5], axis=0)
    intervals = {name: {"low": float(bounds[0, i]), "high": float(bounds[1, i])} for i, name in enumerate(metrics)}
    return intervals, len(values)


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
    log.info("subject bootstrap: %d of %d resamples held every test class", scores["ci95_resamples"]["used"],
             scores["ci95_resamples"]["drawn"])
    if scores["ci95_single_subject_classes"]:
        log.warning("one test subject of %s: the 95%% intervals cannot show how much another subject of "
                    "these classes would change the scores", ", ".join(scores["ci95_single_subject_classes"]))


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
