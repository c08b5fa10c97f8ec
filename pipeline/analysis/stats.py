"""Statistics for comparing models on the same test images: paired tests, ensembles, a binary ROC operating point.

Labels are class indices in the order of the classes; probabilities are (n, n_classes) arrays whose rows sum to 1.
The unit of every paired test's resampling is the subject: its images are not independent of each other.
"""

import itertools

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.multitest import multipletests

from pipeline.analysis.metrics import (
    balanced_accuracies,
    interval_bounds,
    per_subject,
    stratified_draws,
    subject_classes,
)

EXACT_SUBJECTS = 16  # up to this many subjects the permutation test enumerates every swap (2**16 rows)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test: two-sided binomial test (p = 1/2) on the discordant pairs.

    `a_only` counts images only model a gets right, `b_only` those only b gets right.
    """
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    p_value = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {"a_only": a_only, "b_only": b_only, "p_value": float(p_value)}


def paired_bootstrap(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, subjects: np.ndarray,
                     n_resamples: int, seed: int) -> dict:
    """Balanced accuracy of a minus b, and its 95% expanded percentile interval over subjects resampled for both at
    once.

    Resamples are the eval intervals' (same seed, same draws: subjects drawn within their class), and all are
    used; `share_not_better` is the share of resamples where a does not beat b.
    """
    _, groups = np.unique(subjects, return_inverse=True)
    totals, hits_a, hits_b = (per_subject(groups, labels, labels.max() + 1, weights)
                              for weights in (None, predicted_a == labels, predicted_b == labels))

    def difference(draws: np.ndarray) -> np.ndarray:
        truths = draws @ totals
        return balanced_accuracies(truths, draws @ hits_a) - balanced_accuracies(truths, draws @ hits_b)

    strata = subject_classes(groups, labels)
    differences = difference(stratified_draws(strata, n_resamples, seed))
    point = difference(np.ones((1, len(totals))))
    low, high = interval_bounds(differences, strata)
    return {"difference": float(point[0]), "low": float(low), "high": float(high),
            "share_not_better": float(np.mean(differences <= 0)), "resamples_used": n_resamples}


def subject_permutation_test(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray,
                             subjects: np.ndarray, n_permutations: int, seed: int) -> dict:
    """Two-sided paired permutation test of balanced accuracy a minus b, swapping the two models' predictions
    subject by subject.

    Balanced accuracy's difference is a sum of per-subject terms (a subject's hits minus the other model's, each
    over its class's image count), and a swap flips one term's sign; so every permutation is a sign vector. All
    2**subjects are enumerated when there are at most EXACT_SUBJECTS subjects; otherwise `n_permutations` random
    ones are drawn, and p = (1 + hits) / (1 + draws).
    """
    _, groups = np.unique(subjects, return_inverse=True)
    totals, hits_a, hits_b = (per_subject(groups, labels, labels.max() + 1, weights)
                              for weights in (None, predicted_a == labels, predicted_b == labels))
    present = totals.sum(axis=0) > 0
    terms = ((hits_a - hits_b)[:, present] / totals.sum(axis=0)[present]).sum(axis=1) / present.sum()
    observed = terms.sum()
    n_subjects = len(terms)
    exact = n_subjects <= EXACT_SUBJECTS
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n_subjects)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_permutations, n_subjects))
    as_extreme = int(np.sum(np.abs(signs @ terms) >= abs(observed) - 1e-12))
    p_value = as_extreme / len(signs) if exact else (1 + as_extreme) / (1 + len(signs))
    return {"difference": float(observed), "p_value": float(p_value), "permutations": len(signs), "exact": exact,
            "subjects": n_subjects}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values for several comparisons (statsmodels' `multipletests`)."""
    return multipletests(p_values, method="holm")[1].tolist() if p_values else []


def ensemble(probabilities: list[np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of the models' class probabilities (plain mean without weights)."""
    return np.average(np.stack(probabilities), axis=0, weights=weights)


def loss_weights(val_losses: np.ndarray) -> np.ndarray:
    """Ensemble weights proportional to exp(-validation loss), summing to 1.

    exp(-mean log loss) is the geometric mean probability a model gives the true class.
    """
    raw = np.exp(-val_losses)
    return raw / raw.sum()


def any_class_but(negative: int, labels: np.ndarray, probabilities: np.ndarray, sensitivity: float) -> dict:
    """`binary_roc` of "any class but `negative` (an index) vs it": positive when the label is not `negative`,
    scored 1 - P(negative)."""
    return binary_roc(labels != negative, 1.0 - probabilities[:, negative], sensitivity)


def binary_roc(truth: np.ndarray, scores: np.ndarray, sensitivity: float) -> dict:
    """ROC AUC, the curve, and the operating point: the highest threshold whose sensitivity reaches the target.

    Among the thresholds reaching the target, the highest one has the best specificity.
    """
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    reached = np.flatnonzero(tpr >= sensitivity)[0]
    curve_fpr, curve_tpr, _ = roc_curve(truth, scores)
    return {
        "auc": float(roc_auc_score(truth, scores)),
        "threshold": float(thresholds[reached]),
        "sensitivity": float(tpr[reached]),
        "specificity": float(1 - fpr[reached]),
        "fpr": curve_fpr,
        "tpr": curve_tpr,
    }
