"""k-nearest neighbours (Euclidean) with an explicit rule for classes tied on votes.

Rules (params `baselines.knn.ties`):
- `nearest`: the class of the closest neighbour among those of the tied classes;
- `shrink`: drop the farthest neighbour until one class leads (one neighbour always does);
- `random`: one of the tied classes at random, from a generator seeded with `seed`.
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import NearestNeighbors

from pipeline.core.params import KNN_TIES


class TieBreakingKNN(ClassifierMixin, BaseEstimator):
    """Majority vote of the k nearest training rows; `ties` decides between classes with equal votes."""

    def __init__(self, k: int, ties: str, seed: int):
        self.k = k
        self.ties = ties
        self.seed = seed

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "TieBreakingKNN":
        if self.ties not in KNN_TIES:
            raise ValueError(f"ties = {self.ties!r}; allowed: {', '.join(KNN_TIES)}")
        self.classes_, self.codes_ = np.unique(labels, return_inverse=True)
        self.index_ = NearestNeighbors(n_neighbors=min(self.k, len(labels))).fit(features)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        neighbours = self.index_.kneighbors(features, return_distance=False)  # nearest first
        rng = np.random.default_rng(self.seed)
        votes = [vote(self.codes_[row], len(self.classes_), self.ties, rng) for row in neighbours]
        return self.classes_[votes]


def vote(codes: np.ndarray, n_classes: int, ties: str, rng: np.random.Generator) -> int:
    """The winning class code among neighbours' class codes (nearest first), ties broken by `ties`."""
    counts = np.bincount(codes, minlength=n_classes)
    tied = np.flatnonzero(counts == counts.max())
    if len(tied) == 1:
        return int(tied[0])
    if ties == "nearest":
        return int(codes[np.isin(codes, tied)][0])
    if ties == "shrink":
        return vote(codes[:-1], n_classes, ties, rng)
    return int(rng.choice(tied))
