"""Place each augmented copy on the original it was made from."""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from pipeline.mri.fingerprint import FLIP_SIGNS

BATCH = 64
KEY_COMPONENTS = 24  # dimensions the candidate search works in


@dataclass(frozen=True)
class Matches:
    source: np.ndarray  # index into the originals of the best match, per copy
    score: np.ndarray  # its similarity (best over rotations and flips), per copy
    margin: np.ndarray  # best score minus the best of another subject's candidates (or 0)


def match_copies(
    copy_keys: np.ndarray,
    copy_views: list[np.ndarray],
    original_keys: np.ndarray,
    original_views: np.ndarray,
    original_subjects: np.ndarray,
    candidates: int,
) -> Matches:
    """For each copy, the original with the best-matching pair of views under some flip.

    Candidates are the originals whose rotation-invariant keys are nearest the copy's, found
    with a k-d tree (never all pairs); only they are scored exactly. `copy_views` holds one
    (n_copy_angles, d) array per copy, stacked a batch at a time (all of them at once would
    copy the largest array of the stage), and `original_views` is (n_originals,
    n_original_angles, d): the rotations tried are split between the two sides.
    """
    k = min(candidates, len(original_keys))
    parts = len(FLIP_SIGNS)
    source, score, margin = (np.empty(len(copy_keys)) for _ in range(3))
    all_nearest = _nearest(copy_keys, original_keys, k)
    for start in range(0, len(copy_keys), BATCH):
        rows = slice(start, start + BATCH)
        nearest = all_nearest[rows]
        copies = np.stack(copy_views[rows]).reshape(len(nearest), -1, parts, original_views.shape[-1] // parts)
        copies = copies.swapaxes(1, 2)  # (batch, part, copy angle, d / parts)
        originals = original_views[nearest].reshape(len(nearest), -1, parts, copies.shape[-1]).transpose(0, 2, 3, 1)
        dots = copies @ originals  # (batch, part, copy angle, candidate and original angle)
        flips = np.tensordot(FLIP_SIGNS, dots, axes=(1, 1))  # (flip, batch, copy angle, ...)
        scores = flips.reshape(parts, len(nearest), copies.shape[2], k, -1).max(axis=(0, 2, 4))
        best = scores.argmax(axis=1)
        batch = np.arange(len(best))
        subjects = original_subjects[nearest]
        others = np.where(subjects != subjects[batch, best][:, None], scores, 0.0).max(axis=1)
        source[rows] = nearest[batch, best]
        score[rows] = scores[batch, best]
        margin[rows] = scores[batch, best] - others
    return Matches(source=source.astype(int), score=score, margin=margin)


def _nearest(copy_keys: np.ndarray, original_keys: np.ndarray, k: int) -> np.ndarray:
    """The k originals whose keys are nearest each copy's, by a k-d tree over the keys' main components."""
    dims = min(KEY_COMPONENTS, *original_keys.shape)
    mean = original_keys.mean(axis=0)
    basis = np.linalg.svd(original_keys - mean, full_matrices=False)[2][:dims].T
    tree = cKDTree((original_keys - mean) @ basis)
    return tree.query((copy_keys - mean) @ basis, k=k, workers=-1)[1].reshape(len(copy_keys), k)


def match_copies_per_subject(
    copy_keys: np.ndarray,
    copy_views: list[np.ndarray],
    original_keys: np.ndarray,
    original_views: np.ndarray,
    original_subjects: np.ndarray,
    candidates: int,
) -> Matches:
    """`match_copies` within each subject's originals, the best subject against the next: the margin always weighs
    two subjects, where one subject's alike slices can fill all of `match_copies`' nearest candidates (it then
    weighs none and a copy of another subject's slice passes unseen)."""
    subjects = np.unique(original_subjects)
    if len(subjects) < 2:
        return match_copies(copy_keys, copy_views, original_keys, original_views, original_subjects, candidates)
    sources, scores = [], []
    for subject in subjects:
        members = np.flatnonzero(original_subjects == subject)
        matches = match_copies(copy_keys, copy_views, original_keys[members], original_views[members],
                               original_subjects[members], candidates)
        sources.append(members[matches.source])
        scores.append(matches.score)
    sources, scores = np.column_stack(sources), np.column_stack(scores)
    best, runner_up = np.argsort(-scores, axis=1, kind="stable")[:, :2].T
    rows = np.arange(len(scores))
    return Matches(source=sources[rows, best], score=scores[rows, best],
                   margin=scores[rows, best] - scores[rows, runner_up])
