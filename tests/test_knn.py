"""kNN's tie rules on hand-made ties: nearest, shrink and random each decide as documented (fast; no training)."""

import numpy as np
import pytest
from sklearn.base import clone

from pipeline.analysis.knn import TieBreakingKNN

# On a line, seen from 0: A at 1, B at 2 and 3, A at 4; C at 10, far away.
POINTS = np.array([[1.0], [2.0], [3.0], [4.0], [10.0]])
LABELS = np.array(["A", "B", "B", "A", "C"])
QUERY = np.zeros((1, 1))


def knn(k: int, ties: str, seed: int = 0) -> TieBreakingKNN:
    return TieBreakingKNN(k, ties, seed).fit(POINTS, LABELS)


def test_tie_rules_on_a_two_two_tie():
    assert knn(4, "nearest").predict(QUERY)[0] == "A"  # A is closest
    assert knn(4, "shrink").predict(QUERY)[0] == "B"  # without the farthest A, B leads 2 to 1


def test_nearest_rule_ignores_closer_classes_that_are_not_tied():
    labels = np.array(["C", "A", "B", "A", "B"])  # votes A 2, B 2, C 1; C is nearest
    assert TieBreakingKNN(5, "nearest", 0).fit(POINTS, labels).predict(QUERY)[0] == "A"


def test_random_rule_picks_among_the_tied_classes_reproducibly():
    queries = np.zeros((200, 1))
    first = knn(4, "random", seed=3).predict(queries)
    assert set(first) == {"A", "B"}
    assert (knn(4, "random", seed=3).predict(queries) == first).all()
    assert not (knn(4, "random", seed=4).predict(queries) == first).all()


def test_rules_agree_without_a_tie():
    assert {knn(3, ties).predict(QUERY)[0] for ties in ("nearest", "shrink", "random")} == {"B"}


def test_nearest_rule_is_not_the_first_class_in_sort_order():
    labels = np.array(["B", "A", "A", "B", "C"])  # a 2-2 tie whose nearest neighbour is B, not A
    assert TieBreakingKNN(4, "nearest", 0).fit(POINTS, labels).predict(QUERY)[0] == "B"
    assert TieBreakingKNN(4, "shrink", 0).fit(POINTS, labels).predict(QUERY)[0] == "A"  # without the farthest B


def test_shrink_rule_drops_the_farthest_neighbour_not_the_nearest():
    labels = np.array(["A", "B", "A", "B", "C"])  # without the farthest: A 2 to 1; without the nearest: B 2 to 1
    assert TieBreakingKNN(4, "shrink", 0).fit(POINTS, labels).predict(QUERY)[0] == "A"


def test_shrink_rule_breaks_a_three_way_tie_by_shrinking_twice():
    labels = np.array(["B", "C", "A", "A", "C"])  # 3 nearest: B, C, A; without A, B and C still tie; without C, B
    for seed in range(10):
        assert TieBreakingKNN(3, "shrink", seed).fit(POINTS, labels).predict(QUERY)[0] == "B"


def test_an_unknown_tie_rule_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"^ties = 'coin'; allowed: nearest, shrink, random$"):
        TieBreakingKNN(3, "coin", 0).fit(POINTS, LABELS)


def test_the_estimator_clones_and_round_trips_its_params():
    model = TieBreakingKNN(4, "shrink", 7)
    assert clone(model).get_params() == {"k": 4, "ties": "shrink", "seed": 7}
