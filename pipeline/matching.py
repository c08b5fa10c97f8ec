"""Place each augmented copy on the original it was made from."""

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from pipeline.fingerprint import flipped

BATCH = 256


@dataclass(frozen=True)
class Matches:
    source: np.ndarray  # index into the originals of the best match, per copy
    score: np.ndarray  # its similarity (best over rotations and flips), per copy
    margin: np.ndarray  # best score minus the best of another subject's candidates (or 0)


def match_copies(
    copy_keys: np.ndarray,
    copy_views: np.ndarray,
    original_keys: np.ndarray,
    original_views: np.ndarray,
    original_subjects: np.ndarray,
    candidates: int,
) -> Matches:
    """For each copy, the original with the best-matching pair of views, the copy's flipped.

    Candidates come from a nearest-neighbour index over the rotation-invariant keys (never
    all pairs); each is then scored exactly. `copy_views` is (n_copies, n_copy_angles, d) and
    `original_views` (n_originals, n_original_angles, d): the rotations tried are split
    between the two sides.
    """
    k = min(candidates, len(original_keys))
    index = NearestNeighbors(n_neighbors=k).fit(original_keys)
    _, nearest = index.kneighbors(copy_keys)
    source, score, margin = (np.empty(len(copy_keys)) for _ in range(3))
    for start in range(0, len(copy_keys), BATCH):
        rows = slice(start, start + BATCH)
        variants = flipped(copy_views[rows])  # (batch, 4 * n_copy_angles, d)
        scores = np.einsum("bvd,bkad->bkva", variants, original_views[nearest[rows]]).max(axis=(2, 3))
        best = scores.argmax(axis=1)
        batch = np.arange(len(best))
        subjects = original_subjects[nearest[rows]]
        others = np.where(subjects != subjects[batch, best][:, None], scores, 0.0).max(axis=1)
        source[rows] = nearest[rows][batch, best]
        score[rows] = scores[batch, best]
        margin[rows] = scores[batch, best] - others
    return Matches(source=source.astype(int), score=score, margin=margin)
