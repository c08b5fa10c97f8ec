"""Metrics against hand-computed cases and sklearn; subject aggregation; the subject bootstrap."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, log_loss, roc_auc_score

from pipeline.analysis import metrics
from pipeline.analysis.metrics import (
    class_roc_auc,
    confusion,
    evaluate_predictions,
    expanded_tail,
    expected_calibration_error,
    headline_metrics,
    log_caveats,
    majority_balanced_accuracy,
    per_class_metrics,
    prediction_metrics,
    resample_metrics,
    roc_curves,
    score_predictions,
    single_subject_classes,
    stratified_draws,
    subject_bootstrap,
    subject_classes,
    subject_level,
    subject_sums,
)
from tests.correlated_predictions import correlated_predictions, true_balanced_accuracy

CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")


def one_hot_ish(predicted: list[int], confidence: float = 0.7, n_classes: int = 4) -> np.ndarray:
    """Probabilities with `confidence` on each predicted class and the rest shared evenly."""
    probabilities = np.full((len(predicted), n_classes), (1 - confidence) / (n_classes - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def synthetic(n_subjects: int, slices: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, noisy-but-informative probabilities and subject ids; each subject's slices share its label."""
    rng = np.random.default_rng(seed)
    subject_labels = np.arange(n_subjects) % 4
    labels = np.repeat(subject_labels, slices)
    logits = rng.normal(size=(len(labels), 4)) + 1.5 * np.eye(4)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities, np.repeat([f"s{i}" for i in range(n_subjects)], slices)


def test_hand_built_confusion_and_per_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    predicted = [0, 0, 1, 1, 2, 2, 2, 0]
    probabilities = one_hot_ish(predicted)
    assert confusion(labels, probabilities) == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0], [1, 0, 0, 0]]
    per_class = per_class_metrics(labels, probabilities, CLASSES)
    assert per_class["NonDemented"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3, "roc_auc": 11 / 15})
    assert per_class["MildDemented"]["precision"] == pytest.approx(2 / 3) and per_class["MildDemented"]["recall"] == 1
    assert per_class["ModerateDemented"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1, "roc_auc": 0.5}
    scores = headline_metrics(labels, probabilities, ordinal=True)
    assert scores["accuracy"] == pytest.approx(5 / 8)
    assert scores["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1 + 0) / 4)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0.8 + 0) / 4)


def test_qwk_is_sklearns_quadratic_kappa_and_weighs_distance():
    labels, probabilities, _ = synthetic(12)
    expected = cohen_kappa_score(labels, probabilities.argmax(axis=1), weights="quadratic")
    assert headline_metrics(labels, probabilities, ordinal=True)["qwk"] == pytest.approx(expected)
    near = headline_metrics(np.array([0, 1, 2, 3]), one_hot_ish([1, 1, 2, 3]), ordinal=True)["qwk"]
    far = headline_metrics(np.array([0, 1, 2, 3]), one_hot_ish([3, 1, 2, 3]), ordinal=True)["qwk"]
    assert near > far


def test_roc_auc_is_sklearns_macro_one_vs_rest():
    labels, probabilities, _ = synthetic(12)
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert headline_metrics(labels, probabilities, ordinal=True)["roc_auc_ovr"] == pytest.approx(expected)


def test_an_absent_class_is_left_out_not_guessed():
    labels, probabilities, _ = synthetic(12)
    kept = labels != 3
    labels, probabilities = labels[kept], probabilities[kept]
    auc = class_roc_auc(labels, probabilities)
    assert np.isnan(auc[3])
    assert auc[:3] == pytest.approx([roc_auc_score(labels == c, probabilities[:, c]) for c in range(3)])
    scores = headline_metrics(labels, probabilities, ordinal=True)
    assert scores["roc_auc_ovr"] == pytest.approx(auc[:3].mean())
    assert all(value is not None and np.isfinite(value) for value in scores.values())
    assert per_class_metrics(labels, probabilities, CLASSES)["ModerateDemented"]["recall"] is None
    assert set(roc_curves(labels, probabilities, CLASSES)["class"]) == set(CLASSES[:3])
    only_one = headline_metrics(np.zeros(4, int), one_hot_ish([0, 1, 0, 0]), ordinal=True)
    assert only_one["roc_auc_ovr"] is None


def test_ece_hand_case():
    # Confidences 0.9, 0.9 (one right: gap 0.4) and 0.7, 0.7 (both right: gap 0.3), each half of the images.
    probabilities = np.array([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.7, 0.2, 0], [0.1, 0.7, 0.2, 0]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)
    # Within one bin the gaps average before the absolute value: 0.9 right and 0.9 wrong -> |0.5 - 0.9|.
    assert expected_calibration_error(labels[:2], probabilities[:2]) == pytest.approx(0.4)


def test_roc_curves_are_sklearns_per_class():
    labels, probabilities, _ = synthetic(8)
    curves = roc_curves(labels, probabilities, CLASSES)
    assert list(curves.columns) == ["class", "fpr", "tpr"]
    for index, name in enumerate(CLASSES):
        curve = curves[curves["class"] == name]
        area = np.trapezoid(curve["tpr"], curve["fpr"])
        assert area == pytest.approx(roc_auc_score(labels == index, probabilities[:, index]))


def test_subject_level_averages_probabilities_and_takes_the_common_label():
    subjects = np.array(["b", "a", "b", "a", "a"])
    labels = np.array([2, 1, 2, 1, 3])
    probabilities = np.array([[0.1, 0.2, 0.7, 0.0], [0.5, 0.5, 0, 0], [0.3, 0.0, 0.7, 0.0], [0.1, 0.9, 0, 0],
                              [0.0, 0.1, 0.0, 0.9]])
    names, subject_labels, mean = subject_level(subjects, labels, probabilities)
    assert names.tolist() == ["a", "b"] and subject_labels.tolist() == [1, 2]
    np.testing.assert_allclose(mean, [[0.2, 0.5, 0.0, 0.3], [0.2, 0.1, 0.7, 0.0]])


def test_majority_balanced_accuracy_is_one_over_the_classes_present():
    assert majority_balanced_accuracy(np.array([0, 0, 0, 1, 2, 3])) == pytest.approx(0.25)
    assert majority_balanced_accuracy(np.array([1, 1, 2])) == pytest.approx(0.5)


def test_bootstrap_covers_the_estimate_is_seeded_and_narrows_with_subjects():
    labels, probabilities, subjects = synthetic(16)
    intervals, used = subject_bootstrap(labels, probabilities, subjects, 100, seed=3, ordinal=True)
    point = headline_metrics(labels, probabilities, ordinal=True)
    assert used == 100
    for name, interval in intervals.items():
        assert interval["low"] <= point[name] <= interval["high"], name
    assert subject_bootstrap(labels, probabilities, subjects, 100, seed=3, ordinal=True) == (intervals, used)
    assert subject_bootstrap(labels, probabilities, subjects, 100, seed=4, ordinal=True)[0] != intervals
    many = subject_bootstrap(*synthetic(160), 100, seed=3, ordinal=True)[0]
    for name in intervals:
        width = intervals[name]["high"] - intervals[name]["low"]
        assert many[name]["high"] - many[name]["low"] < width, name


def test_the_expanded_tail_is_hesterbergs_and_tends_to_the_plain_percentile():
    # 8 subjects in 4 classes: 4 degrees of freedom, z = sqrt(5 / 4) t(0.975, 4) = 1.1180 x 2.7764 = 3.1042
    assert expanded_tail(8, 4) == pytest.approx(0.000954, abs=1e-6)
    assert expanded_tail(46, 4) == pytest.approx(0.0206, abs=1e-4)
    assert expanded_tail(4, 4) == 0.0  # one subject a class: the resamples' whole range
    assert 0.0249 < expanded_tail(10_000, 4) < 0.025


def interval_coverage(subjects_per_class: int, trials: int, seed: int) -> float:
    """The share of simulated 4-class test splits whose balanced accuracy interval holds the true balanced accuracy
    (slices of a subject right or wrong together: `correlated_predictions`)."""
    rng, truth, covered = np.random.default_rng(seed), true_balanced_accuracy(), 0
    for trial in range(trials):
        labels, subjects, predicted, _ = correlated_predictions(rng, subjects_per_class=subjects_per_class, classes=4)
        interval = subject_bootstrap(labels, np.eye(4)[predicted], subjects, 500, trial, ordinal=False,
                                     metrics=("balanced_accuracy",))[0]["balanced_accuracy"]
        covered += interval["low"] <= truth <= interval["high"]
    return covered / trials


def test_the_subject_interval_keeps_near_its_level_on_few_subjects_where_plain_percentiles_do_not(monkeypatch):
    assert interval_coverage(3, 400, seed=1) >= 0.88  # 0.89 here; benchmarks/interval_coverage.py runs more
    assert interval_coverage(5, 400, seed=1) >= 0.93  # 0.945
    monkeypatch.setattr(metrics, "expanded_tail", lambda subjects, strata: 0.025)  # plain 2.5% and 97.5% percentiles
    assert interval_coverage(3, 400, seed=1) <= 0.85  # 0.84: "95%" that holds the truth five times in six


def test_bootstrap_resamples_whole_subjects_within_their_class_and_uses_every_resample():
    # Subject "x" (class 0) is all right and "y" (class 1) all wrong: drawn apart, a resample's accuracy would be 0
    # or 1; each is its class's only subject, so every resample draws both, once each.
    labels = np.array([0, 0, 1, 1])
    probabilities = one_hot_ish([0, 0, 0, 0], n_classes=2, confidence=0.9)
    intervals, used = subject_bootstrap(labels, probabilities, np.array(["x", "x", "y", "y"]), 100, seed=0,
                                        metrics=("accuracy",), ordinal=True)
    assert intervals == {"accuracy": {"low": 0.5, "high": 0.5}} and used == 100
    # One class only: ROC AUC (and QWK) are undefined on every resample, so none is used.
    assert subject_bootstrap(np.zeros(4, int), probabilities, np.array(["x", "x", "y", "y"]), 10, seed=0, ordinal=True) \
        == (dict.fromkeys(("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "log_loss", "ece", "qwk")), 0)


def test_classes_with_one_test_subject_are_named():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])  # ModerateDemented is absent: not named
    subjects = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    assert single_subject_classes(labels, subjects, CLASSES) == ["VeryMildDemented", "MildDemented"]
    assert single_subject_classes(*synthetic(8)[::2], CLASSES) == []  # two subjects of each class


def test_caveats_are_logged_once_by_the_caller_not_by_scoring(caplog):
    labels, probabilities, subjects = synthetic(5)  # NonDemented has two subjects, the other classes one
    with caplog.at_level("INFO", logger="pipeline.analysis.metrics"):
        scores = score_predictions(labels, probabilities, subjects, CLASSES, n_resamples=20, seed=0, ordinal=True)
    assert caplog.records == []  # compare scores two ensembles: scoring itself stays quiet
    with caplog.at_level("INFO", logger="pipeline.analysis.metrics"):
        log_caveats(scores)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == ["one test subject of VeryMildDemented, MildDemented, ModerateDemented: the 95% intervals "
                        "cannot show how much another subject of these classes would change the scores"]


def test_a_class_absent_from_labels_and_predictions_keeps_its_row_column_and_distance():
    """Class 1 is neither true nor predicted: the confusion matrix is still 4x4, per-class results stay on their
    classes, and the quadratic kappa counts class 0 to 2 as two steps apart, not one."""
    labels = np.array([0, 0, 2, 2, 3, 3])
    predicted = [0, 2, 2, 3, 3, 2]
    probabilities = one_hot_ish(predicted)
    assert confusion(labels, probabilities) == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    per_class = per_class_metrics(labels, probabilities, CLASSES)
    assert per_class["VeryMildDemented"]["support"] == 0 and per_class["VeryMildDemented"]["f1"] is None
    assert per_class["MildDemented"]["precision"] == pytest.approx(1 / 3) and per_class["ModerateDemented"]["support"] == 2
    scores = headline_metrics(labels, probabilities, ordinal=True)
    assert scores["qwk"] == pytest.approx(cohen_kappa_score(labels, predicted, labels=range(4), weights="quadratic"))
    assert scores["qwk"] != pytest.approx(cohen_kappa_score(labels, predicted, weights="quadratic"))
    assert scores["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))  # over classes 0, 2, 3


def test_a_predicted_class_that_is_not_true_raises_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = prediction_metrics(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), 4, ordinal=True)
    assert scores["balanced_accuracy"] == pytest.approx(0.75)


def test_headline_metrics_name_every_score():
    labels, probabilities, _ = synthetic(8)
    scores = headline_metrics(labels, probabilities, ordinal=True)
    assert set(scores) == {"accuracy", "balanced_accuracy", "macro_f1", "qwk", "roc_auc_ovr", "log_loss", "ece"}
    assert scores["log_loss"] == pytest.approx(log_loss(labels, probabilities))
    assert scores["ece"] == pytest.approx(expected_calibration_error(labels, probabilities))


def test_roc_auc_with_exactly_two_classes_present():
    labels = np.array([0, 0, 3, 3, 3])
    probabilities = one_hot_ish([0, 3, 3, 3, 0])
    auc = class_roc_auc(labels, probabilities)
    assert auc[0] == pytest.approx(roc_auc_score(labels == 0, probabilities[:, 0])) and np.isnan(auc[1:3]).all()


def test_ece_keeps_neighbouring_bins_apart_at_both_ends():
    # Two bins: confidence 0.5 (wrong) in the first, 0.8 (right) in the second: (0.5 + 0.2) / 2, not |0.2 - 0.5| / 2.
    low = np.array([[0.5, 0.5], [0.8, 0.2]])
    assert expected_calibration_error(np.array([1, 0]), low, n_bins=2) == pytest.approx(0.35)
    # Fifteen bins: 0.95 (right) in the last, 0.9 (wrong) in the one below: (0.05 + 0.9) / 2.
    high = np.array([[0.95, 0.05], [0.9, 0.1]])
    assert expected_calibration_error(np.array([0, 1]), high) == pytest.approx(0.475)


def test_roc_curves_of_one_class_only_is_an_empty_table_and_indices_run_on():
    empty = roc_curves(np.zeros(3, int), one_hot_ish([0, 1, 0]), CLASSES)
    assert empty.empty and list(empty.columns) == ["class", "fpr", "tpr"]
    labels, probabilities, _ = synthetic(8)
    curves = roc_curves(labels, probabilities, CLASSES)
    assert list(curves.index) == list(range(len(curves)))


def test_subject_bootstrap_is_the_metric_on_whole_subject_resamples():
    labels, probabilities, subjects = synthetic(10, slices=9, seed=2)
    intervals, used = subject_bootstrap(labels, probabilities, subjects, 300, seed=5, metrics=("accuracy",), ordinal=True)
    names = np.unique(subjects)
    values = []
    for draw in stratified_draws(labels[::9], 300, seed=5):  # subject s<i> is the i-th name, of class i % 4
        rows = np.concatenate([np.flatnonzero(subjects == name) for name in np.repeat(names, draw)])
        values.append(np.mean(probabilities[rows].argmax(axis=1) == labels[rows]))
    assert used == len(values) == 300
    tail = 100 * expanded_tail(10, 4)
    assert (intervals["accuracy"]["low"], intervals["accuracy"]["high"]) == pytest.approx(
        tuple(np.percentile(values, [tail, 100 - tail])))
    assert np.percentile(values, tail + 1) != np.percentile(values, tail)  # the interval's ends are pinned


def test_subject_bootstrap_in_small_chunks_gives_the_same_intervals(monkeypatch):
    labels, probabilities, subjects = synthetic(12, seed=4)
    whole = subject_bootstrap(labels, probabilities, subjects, 50, seed=2, ordinal=True)
    monkeypatch.setattr("pipeline.analysis.metrics.CHUNK_CELLS", 7 * 96)  # 96 rank columns: 7 resamples a chunk
    chunked = subject_bootstrap(labels, probabilities, subjects, 50, seed=2, ordinal=True)
    assert chunked[1] == whole[1] == 50
    for name, interval in whole[0].items():
        assert chunked[0][name] == pytest.approx(interval, abs=1e-12), name


def test_stratified_draws_keep_every_class_and_its_number_of_subjects():
    strata = np.array([2, 0, 2, 2, 5, 0, 2])  # class 5 has one subject, classes 1, 3 and 4 none
    draws = stratified_draws(strata, 200, seed=1)
    assert draws.shape == (200, 7) and draws.min() >= 0
    for stratum, size in ((0, 2), (2, 4), (5, 1)):
        assert (draws[:, strata == stratum].sum(axis=1) == size).all(), stratum
    assert (draws[:, strata == 5] == 1).all()
    assert (draws[:, strata == 2] != 1).any()  # subjects are drawn with replacement
    np.testing.assert_array_equal(stratified_draws(strata, 200, seed=1), draws)
    assert (stratified_draws(strata, 200, seed=2) != draws).any()


def test_subject_classes_are_the_commonest_label_ties_to_the_lower_index():
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    labels = np.array([3, 1, 3, 2, 1, 0, 2, 2, 0])
    assert subject_classes(groups, labels).tolist() == [3, 1, 0]


def mixed_test_set(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subjects numbered 0.., labels and probabilities of 7 classes with tied scores (rows from a pool of 6):
    classes 2 and 3 of one subject each, class 4 only on one image of a class-1 subject, class 5 never true but
    predicted, class 6 neither true nor predicted."""
    rng = np.random.default_rng(seed)
    subject_labels = np.array([0, 0, 0, 1, 1, 1, 2, 3])
    sizes = rng.integers(1, 5, size=len(subject_labels))
    sizes[3] = 2  # its labels 4 and 1: a tie, so the subject is of class 1
    groups = np.repeat(np.arange(len(subject_labels)), sizes)
    labels = subject_labels[groups]
    labels[np.flatnonzero(groups == 3)[0]] = 4
    pool = np.column_stack([0.99 * rng.dirichlet(np.full(6, 0.5), size=6), np.full(6, 0.01)])
    top = pool[0].argmax()
    pool[0, [top, 5]] = pool[0, [5, top]]  # row 0 predicts class 5
    return groups, labels, pool[rng.integers(len(pool), size=len(labels))]


@pytest.mark.parametrize("seed", range(6))
def test_resample_metrics_are_headline_metrics_of_the_same_subject_resamples(seed):
    """Every metric of every resample, from per-subject sums, equals scikit-learn's `headline_metrics` on the
    resample's images (each subject's images repeated as often as it is drawn), within 1e-9."""
    groups, labels, probabilities = mixed_test_set(seed)
    draws = stratified_draws(subject_classes(groups, labels), 40, seed)
    arrays = resample_metrics(subject_sums(groups, labels, probabilities), draws)
    assert set(arrays) == {"accuracy", "balanced_accuracy", "macro_f1", "qwk", "roc_auc_ovr", "log_loss", "ece"}
    assert 0 < (draws[:, 3] == 0).sum() < len(draws)  # some resamples leave out the one image of class 4
    for row, draw in enumerate(draws):
        rows = np.repeat(np.arange(len(labels)), draw[groups])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the probability rows sum to 1 only to rounding
            expected = headline_metrics(labels[rows], probabilities[rows], ordinal=True)
        for name, value in expected.items():
            assert arrays[name][row] == pytest.approx(np.nan if value is None else value, abs=1e-9, nan_ok=True), \
                (name, row)


def test_resample_metrics_of_one_class_leave_roc_auc_and_qwk_undefined():
    groups, labels = np.array([0, 0, 1, 1]), np.zeros(4, int)
    scores = resample_metrics(subject_sums(groups, labels, one_hot_ish([0, 1, 0, 0], n_classes=3)),
                              np.array([[1, 1], [2, 0], [0, 2]]))
    assert scores["accuracy"] == pytest.approx([0.75, 0.5, 1.0]) and np.isnan(scores["roc_auc_ovr"]).all()
    assert np.isnan(scores["qwk"][2]) and not np.isnan(scores["qwk"][:2]).any()  # QWK needs some disagreement


def test_score_predictions_gathers_every_part_under_its_name():
    labels, probabilities, subjects = synthetic(8, seed=3)
    scores = score_predictions(labels, probabilities, subjects, CLASSES, n_resamples=30, seed=1, ordinal=True)
    _, subject_labels, subject_probabilities = subject_level(subjects, labels, probabilities)
    intervals, used = subject_bootstrap(labels, probabilities, subjects, 30, seed=1, ordinal=True)
    assert scores == {
        **headline_metrics(labels, probabilities, ordinal=True),
        "per_class": per_class_metrics(labels, probabilities, CLASSES),
        "confusion_matrix": confusion(labels, probabilities),
        "subject": {**headline_metrics(subject_labels, subject_probabilities, ordinal=True),
                    "confusion_matrix": confusion(subject_labels, subject_probabilities)},
        "ci95": intervals, "ci95_resamples": {"drawn": 30, "used": used}, "ci95_single_subject_classes": [],
        "classes": list(CLASSES), "absent_classes": [], "test_images": 32, "test_subjects": 8,
        "chance_balanced_accuracy": 0.25, "majority_balanced_accuracy": majority_balanced_accuracy(labels),
    }
    absent = score_predictions(labels[labels < 3], probabilities[labels < 3], subjects[labels < 3], CLASSES, 5, 0, ordinal=True)
    assert absent["absent_classes"] == ["ModerateDemented"]


def test_evaluate_predictions_scores_the_table_and_logs_its_caveats(caplog):
    labels, probabilities, subjects = synthetic(8, seed=3)
    keep = labels < 2  # no MildDemented, no ModerateDemented
    frame = pd.DataFrame({"label_index": labels[keep], "subject": subjects[keep],
                          **{f"prob_{name}": probabilities[keep, i] for i, name in enumerate(CLASSES)}})
    with caplog.at_level("INFO", logger="pipeline.analysis.metrics"):
        scores = evaluate_predictions(frame, CLASSES, n_resamples=20, seed=4, ordinal=True)
    assert scores == score_predictions(labels[keep], probabilities[keep], subjects[keep], CLASSES, 20, 4, ordinal=True)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == ("no test images of MildDemented, ModerateDemented: their recall, F1 and ROC AUC are "
                           "undefined and left out of the macro averages")
    assert messages[1] == "subject bootstrap: 20 of 20 resamples, subjects drawn within their class, define every interval"


def nested_keys(value) -> set[str]:
    """Every key of a nested dict, at any depth."""
    if not isinstance(value, dict):
        return set()
    return set(value) | {key for inner in value.values() for key in nested_keys(inner)}


def without_qwk(value):
    """A nested dict with every `qwk` key removed."""
    return {key: without_qwk(inner) for key, inner in value.items() if key != "qwk"} if isinstance(value, dict) \
        else value


def test_unordered_classes_get_every_score_but_qwk():
    """102 classes, 4 subjects each holding one image of every class: the unordered scores are the ordinal
    ones without `qwk`, at every level (per image, per subject, intervals), not a score less nor more."""
    classes = tuple(f"flower_{number:03d}" for number in range(102))
    rng = np.random.default_rng(7)
    labels = np.tile(np.arange(102), 4)
    logits = rng.normal(size=(len(labels), 102)) + 3 * np.eye(102)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"label_index": labels, "subject": np.repeat(["a", "b", "c", "d"], 102),
                          **{f"prob_{name}": probabilities[:, i] for i, name in enumerate(classes)}})
    unordered = evaluate_predictions(frame, classes, n_resamples=10, seed=0, ordinal=False)
    ordinal = evaluate_predictions(frame, classes, n_resamples=10, seed=0, ordinal=True)
    assert "qwk" not in nested_keys(unordered) and {"qwk"} <= set(ordinal["ci95"]) & set(ordinal["subject"])
    assert unordered == without_qwk(ordinal)
    assert unordered["ci95_resamples"]["used"] == 10 and None not in unordered["ci95"].values()
    assert len(unordered["per_class"]) == 102 and np.array(unordered["confusion_matrix"]).shape == (102, 102)
    assert prediction_metrics(labels, probabilities.argmax(axis=1), 102, ordinal=False).keys() == \
        {"accuracy", "balanced_accuracy", "macro_f1"}
