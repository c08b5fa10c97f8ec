"""Paired tests, ensembles and the binary view's operating point against known cases."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from pipeline.analysis.metrics import expanded_tail, stratified_draws, subject_bootstrap, subject_classes
from pipeline.analysis.stats import (
    EXACT_SUBJECTS,
    any_class_but,
    binary_roc,
    ensemble,
    holm,
    loss_weights,
    mcnemar_exact,
    paired_bootstrap,
    subject_permutation_test,
)
from tests.correlated_predictions import correlated_predictions


def discordant(a_only: int, b_only: int, both: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of two models: `a_only` images only a gets right, `b_only` only b, `both` both."""
    correct_a = np.array([True] * a_only + [False] * b_only + [True] * both)
    correct_b = np.array([False] * a_only + [True] * b_only + [True] * both)
    return correct_a, correct_b


def test_mcnemar_exact_matches_the_binomial_tail():
    result = mcnemar_exact(*discordant(1, 9))
    assert result == {"a_only": 1, "b_only": 9, "p_value": pytest.approx(0.021484375)}  # 2 * (1 + 10) / 2**10
    assert mcnemar_exact(*discordant(9, 1))["p_value"] == pytest.approx(0.021484375)
    assert mcnemar_exact(*discordant(5, 5))["p_value"] == pytest.approx(1.0)
    assert mcnemar_exact(*discordant(0, 0)) == {"a_only": 0, "b_only": 0, "p_value": 1.0}


def every_class_per_subject(n_subjects: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0-3 once per subject, so every subject resample holds every class."""
    return np.tile(np.arange(4), n_subjects), np.repeat([f"s{i:03d}" for i in range(n_subjects)], 4)


def test_paired_bootstrap_of_a_constant_gap_is_that_gap():
    labels, subjects = every_class_per_subject(10)
    half_right = np.where(labels < 2, labels, 0)  # right on classes 0 and 1 only: balanced accuracy 0.5
    result = paired_bootstrap(labels, labels, half_right, subjects, 200, seed=0)
    assert result == {"difference": 0.5, "low": 0.5, "high": 0.5, "share_not_better": 0.0, "resamples_used": 200}
    same = paired_bootstrap(labels, half_right, half_right, subjects, 50, seed=0)
    assert (same["difference"], same["low"], same["high"], same["share_not_better"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_interval_covers_the_known_mean_gap_and_is_seeded():
    # Model b is right on each image with probability 1/2, else one class up: the true gap in balanced accuracy is 1/2.
    labels, subjects = every_class_per_subject(200)
    rng = np.random.default_rng(1)
    predicted_b = np.where(rng.random(len(labels)) < 0.5, labels, (labels + 1) % 4)
    result = paired_bootstrap(labels, labels, predicted_b, subjects, 300, seed=2)
    assert result["low"] < 0.5 < result["high"] and result["high"] - result["low"] < 0.15
    assert result["difference"] == pytest.approx(1 - balanced_accuracy_score(labels, predicted_b))
    assert paired_bootstrap(labels, labels, predicted_b, subjects, 300, seed=2) == result
    assert paired_bootstrap(labels, labels, predicted_b, subjects, 300, seed=3) != result


def sklearn_differences(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, subjects: np.ndarray,
                        n_resamples: int, seed: int) -> np.ndarray:
    """scikit-learn's balanced accuracy of a minus b on each stratified subject resample, images repeated as drawn."""
    _, groups = np.unique(subjects, return_inverse=True)
    differences = []
    for draw in stratified_draws(subject_classes(groups, labels), n_resamples, seed):
        rows = np.repeat(np.arange(len(labels)), draw[groups])
        with warnings.catch_warnings():  # a resample may lack a class a model predicts: averaged over those it holds
            warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
            differences.append(balanced_accuracy_score(labels[rows], predicted_a[rows])
                               - balanced_accuracy_score(labels[rows], predicted_b[rows]))
    return np.array(differences)


def test_paired_bootstrap_is_sklearns_balanced_accuracy_on_the_same_subject_resamples():
    rng = np.random.default_rng(5)
    subjects = np.repeat([f"s{i}" for i in range(7)], 3)
    labels = np.repeat(rng.integers(0, 3, size=7), 3)
    predicted_a, predicted_b = rng.integers(0, 3, size=(2, len(labels)))
    result = paired_bootstrap(labels, predicted_a, predicted_b, subjects, 60, seed=9)
    differences = sklearn_differences(labels, predicted_a, predicted_b, subjects, 60, seed=9)
    assert result["resamples_used"] == len(differences) == 60
    tail = 100 * expanded_tail(7, len(np.unique(labels)))  # every subject's slices share its class
    assert (result["low"], result["high"]) == pytest.approx(tuple(np.percentile(differences, [tail, 100 - tail])))
    assert result["share_not_better"] == pytest.approx(np.mean(differences <= 0))


def test_paired_bootstrap_resamples_subjects_within_their_class():
    labels = np.array([0, 0, 1, 1])  # one subject per class: every resample draws both, so a's 1 minus b's 1/2
    result = paired_bootstrap(labels, labels, np.zeros(4, int), np.array(["x", "x", "y", "y"]), 100, seed=0)
    assert result["resamples_used"] == 100 and result["low"] == result["high"] == 0.5


def test_paired_bootstrap_draws_what_the_eval_intervals_draw():
    """Model b always wrong: each resample's difference is a's balanced accuracy on it, so with the same seed the
    paired interval is a's subject-bootstrap interval."""
    rng = np.random.default_rng(6)
    subjects = np.repeat([f"s{i}" for i in range(9)], 3)
    labels = np.repeat(rng.integers(0, 3, size=9), 3)
    probabilities = rng.dirichlet(np.ones(3), size=len(labels))
    predicted = probabilities.argmax(axis=1)
    paired = paired_bootstrap(labels, predicted, (labels + 1) % 3, subjects, 200, seed=4)
    intervals, _ = subject_bootstrap(labels, probabilities, subjects, 200, seed=4, ordinal=False,
                                     metrics=("balanced_accuracy",))
    assert (paired["low"], paired["high"]) == pytest.approx(tuple(intervals["balanced_accuracy"].values()))
    assert paired_bootstrap(labels, predicted, (labels + 1) % 3, subjects, 200, seed=5)["low"] != paired["low"]


def test_ensemble_is_the_weighted_mean_of_the_probabilities():
    a = np.array([[0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.6, 0.4], [0.0, 1.0]])
    np.testing.assert_allclose(ensemble([a, b]), [[0.4, 0.6], [0.3, 0.7]])
    np.testing.assert_allclose(ensemble([a, b], np.array([0.75, 0.25])), [[0.3, 0.7], [0.45, 0.55]])


def test_loss_weights_favour_the_lower_validation_loss():
    weights = loss_weights(np.array([1.0, 2.0, 2.0]))
    np.testing.assert_allclose(weights, np.exp([-1, -2, -2]) / np.exp([-1, -2, -2]).sum())
    assert weights.sum() == pytest.approx(1) and weights[0] > weights[1] == weights[2]


def test_any_class_but_class_0_operating_point_hand_case():
    # Negatives (NonDemented) score 0.1, 0.3, 0.5, 0.8; positives 0.95, 0.85, 0.6, 0.4, 0.05 (score = 1 - P(class 0)).
    labels = np.array([0, 0, 0, 0, 1, 2, 3, 1, 2])
    scores = np.array([0.1, 0.3, 0.5, 0.8, 0.95, 0.85, 0.6, 0.4, 0.05])
    probabilities = np.column_stack([1 - scores, scores / 3, scores / 3, scores / 3])
    point = any_class_but(0, labels, probabilities, 0.8)
    assert point["auc"] == pytest.approx(13 / 20)
    assert (point["threshold"], point["sensitivity"], point["specificity"]) == pytest.approx((0.4, 0.8, 0.5))
    strict = any_class_but(0, labels, probabilities, 0.9)  # 4 of 5 positives is not enough: all 5 need threshold 0.05
    assert (strict["threshold"], strict["sensitivity"], strict["specificity"]) == pytest.approx((0.05, 1.0, 0.0))
    easy = binary_roc(labels != 0, scores, 0.2)
    assert (easy["threshold"], easy["specificity"]) == pytest.approx((0.95, 1.0))
    assert easy["fpr"][-1] == easy["tpr"][-1] == 1.0


def test_paired_bootstrap_with_a_one_image_class_and_a_gap_in_the_classes_is_sklearns():
    """Classes 0, 2 and 3 (none of 1), class 3 on one image only (of a class-0 or class-2 subject), so resamples
    that leave its subject out average over the classes they hold; many resamples, so the percentiles are exact."""
    rng = np.random.default_rng(4)
    subjects = np.repeat([f"s{i}" for i in range(8)], 4)
    labels = np.repeat(rng.choice([0, 2], size=8), 4)
    labels[5] = 3  # one image of class 3, in subject s1
    predicted_a, predicted_b = rng.choice([0, 2, 3], size=(2, len(labels)))
    result = paired_bootstrap(labels, predicted_a, predicted_b, subjects, 400, seed=3)
    assert result["difference"] == pytest.approx(balanced_accuracy_score(labels, predicted_a)
                                                 - balanced_accuracy_score(labels, predicted_b))
    differences = sklearn_differences(labels, predicted_a, predicted_b, subjects, 400, seed=3)
    assert result["resamples_used"] == len(differences) == 400
    tail = 100 * expanded_tail(8, 2)  # subjects of class 0 and 2 (s1's one class-3 image does not make its class)
    assert (result["low"], result["high"]) == pytest.approx(tuple(np.percentile(differences, [tail, 100 - tail])))
    assert np.percentile(differences, tail + 1) != np.percentile(differences, tail)  # the interval's ends are pinned


def test_the_subject_permutation_test_is_the_balanced_accuracy_difference_and_exact_on_few_subjects():
    labels, subjects = every_class_per_subject(6)
    half_right = np.where(labels < 2, labels, 0)
    result = subject_permutation_test(labels, labels, half_right, subjects, 1000, seed=0)
    assert result["difference"] == pytest.approx(balanced_accuracy_score(labels, labels)
                                                 - balanced_accuracy_score(labels, half_right))
    # every subject favours a alike: only "no swap" and "swap all" are as extreme, of 2**6 sign vectors
    assert result == {**result, "p_value": pytest.approx(2 / 64), "permutations": 64, "exact": True, "subjects": 6}


def test_the_subject_permutation_test_draws_at_random_beyond_the_exact_size_and_never_reaches_zero():
    labels, subjects = every_class_per_subject(EXACT_SUBJECTS + 4)
    half_right = np.where(labels < 2, labels, 0)
    result = subject_permutation_test(labels, labels, half_right, subjects, 500, seed=3)
    assert not result["exact"] and result["permutations"] == 500
    assert result["p_value"] == pytest.approx(1 / 501)  # no random sign vector but all-ones is as extreme


def test_identical_models_have_p_one():
    labels, subjects = every_class_per_subject(5)
    assert subject_permutation_test(labels, labels, labels, subjects, 100, seed=0)["p_value"] == 1.0


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def rejection_rates(gap: float, draws: int, seed: int) -> tuple[float, float]:
    """Shares of simulated test splits on which the subject permutation test and image-level McNemar reject at 5%."""
    rng = np.random.default_rng(seed)
    permutation = mcnemar = 0
    for draw in range(draws):
        labels, subjects, predicted_a, predicted_b = correlated_predictions(rng, gap=gap)
        permutation += subject_permutation_test(labels, predicted_a, predicted_b, subjects, 1000, draw)["p_value"] < 0.05
        mcnemar += mcnemar_exact(predicted_a == labels, predicted_b == labels)["p_value"] < 0.05
    return permutation / draws, mcnemar / draws


def test_with_no_true_difference_the_subject_test_keeps_its_level_where_image_level_mcnemar_does_not():
    permutation, mcnemar = rejection_rates(gap=0.0, draws=300, seed=2026)
    assert permutation <= 0.07  # 0.043 here; benchmarks/paired_tests.py runs 4,000 draws
    assert mcnemar >= 0.3  # 0.55: slices of one subject are counted as independent evidence


def test_the_subject_test_finds_a_planted_gap():
    permutation, _ = rejection_rates(gap=2.0, draws=50, seed=7)
    assert permutation >= 0.8
