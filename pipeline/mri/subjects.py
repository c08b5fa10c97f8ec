"""Group a class's originals into subjects: a name rule proposes, the pixels decide.

A rule is accepted when, for most of the neighbour links it proposes (slice k to slice k+1 of
one subject), the proposed next slice is the most similar of all the originals at that slice
position, as neighbouring slices of one subject are far more alike than those of two. When no
rule applies or the pixels refute it, the pixels alone chain slices into subjects
(`subjects_from_pixels`), merging rather than splitting where unsure: the safe side for leakage.
"""

import re
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SLICE_MAJOR = re.compile(r"^(?P<prefix>[A-Za-z_\-]*?)(?P<number>\d+)$")
SLICE_OF_SUBJECT = re.compile(r"^(?P<slice>\d+) \((?P<subject>\d+)\)$")
CONFIRMATION = 0.9  # share of a rule's neighbour links the pixels must confirm
CHAIN_LINKS = 2  # a slice's neighbours in its subject: the slices above and below it
MIN_GROUP = 3  # a chain of fewer slices is a piece broken off a subject, not a subject


@dataclass(frozen=True)
class Grouping:
    subjects: list[str]  # subject id per original, in input order
    rule: str  # 'slice-major', 'slice (subject)' or 'pixels'
    note: str  # how the rule fared against the pixels


def fits_a_name_rule(stem: str) -> bool:
    """Whether a file stem could follow one of the name rules (`nonDem12`, `12 (3)`)."""
    return bool(SLICE_MAJOR.match(stem) or SLICE_OF_SUBJECT.match(stem))


def group_subjects(label: str, stems: list[str], views: np.ndarray, slices_per_subject: int,
                   neighbour_similarity: float) -> Grouping:
    """Subject ids for one class's originals, given their file stems and upright views."""
    for rule, proposal in _proposals(stems, slices_per_subject):
        subject, position = proposal
        confirmed = _confirmed_share(subject, position, views)
        note = f"{rule} rule: pixels confirm {confirmed:.1%} of its neighbour links"
        if confirmed >= CONFIRMATION:
            return Grouping([f"{label}/s{value:03d}" for value in subject], rule, note)
        note += f" (< {CONFIRMATION:.0%}), rejected"
        break
    else:
        note = "no name rule fits these file names"
    subjects = subjects_from_pixels(stems, [label] * len(stems), views, neighbour_similarity)
    return Grouping(subjects, "pixels", note)


def _proposals(stems: list[str], slices_per_subject: int):
    """(rule, (subject, slice position) arrays) for each name rule that fits every stem."""
    parens = [SLICE_OF_SUBJECT.match(stem) for stem in stems]
    if stems and all(parens):
        yield "slice (subject)", (
            np.array([int(m["subject"]) for m in parens]),
            np.array([int(m["slice"]) for m in parens]),
        )
        return
    major = [SLICE_MAJOR.match(stem) for stem in stems]
    if not stems or not all(major) or len({m["prefix"] for m in major}) != 1:
        return
    numbers = np.array([int(m["number"]) for m in major])
    numbers -= numbers.min()
    span = int(numbers.max()) + 1
    if span % slices_per_subject == 0 and len(set(numbers.tolist())) == len(numbers):
        per_slice = span // slices_per_subject
        yield "slice-major", (numbers % per_slice, numbers // per_slice)


def _confirmed_share(subject: np.ndarray, position: np.ndarray, views: np.ndarray) -> float:
    """Share of proposed neighbour links whose next slice is the best match at its position."""
    order = np.lexsort((position, subject))  # by subject, then slice position
    starts, ends = order[:-1], order[1:]
    linked = subject[starts] == subject[ends]
    starts, ends = starts[linked], ends[linked]
    if not len(starts):
        return 0.0
    confirmed = 0
    for level in np.unique(position[ends]):
        at_level = np.flatnonzero(position == level)
        into_level = position[ends] == level
        similarity = views[starts[into_level]] @ views[at_level].T
        confirmed += int((at_level[similarity.argmax(axis=1)] == ends[into_level]).sum())
    return confirmed / len(starts)


def subjects_from_pixels(names: list[str], labels: list[str], views: np.ndarray, threshold: float) -> list[str]:
    """Subject ids (`<label>/g<n>`) for slices whose names say nothing: chains of mutually nearest slices per label.

    `views`: unit-norm upright views (`fingerprint.fingerprints`), a row per name; `names` are
    unique and only number the groups, so ids do not depend on the input order. Two slices are
    linked when each is among the other's CHAIN_LINKS most similar and they correlate at least
    `threshold`: the slices above and below one in its subject are, a slice of another subject
    rarely. A chain of fewer than MIN_GROUP slices joins the chain of its most similar slice, so
    that a broken-off end does not land in another split than its subject.
    """
    order = sorted(range(len(names)), key=names.__getitem__)
    subjects = [""] * len(names)
    for label in sorted(set(labels)):
        members = [index for index in order if labels[index] == label]
        groups = _chains(views[members], threshold)
        first = {}
        for group in groups:  # numbered by their first name
            first.setdefault(group, len(first))
        for index, group in zip(members, groups):
            subjects[index] = f"{label}/g{first[group]:03d}"
    return subjects


def _chains(views: np.ndarray, threshold: float) -> np.ndarray:
    """Group numbers of the rows of `views`: mutual-nearest chains, small ones joined to their nearest."""
    n = len(views)
    similarity = views @ views.T
    np.fill_diagonal(similarity, -np.inf)
    links = min(CHAIN_LINKS, n - 1)
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :links]
    start, end = np.repeat(np.arange(n), links), nearest.ravel()
    linked = np.zeros((n, n), bool)
    linked[start, end] = True
    keep = linked[end, start] & (similarity[start, end] >= threshold)
    graph = coo_matrix((np.ones(int(keep.sum())), (start[keep], end[keep])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    while True:
        sizes = np.bincount(group)
        small = np.flatnonzero(sizes < MIN_GROUP)
        if not len(small) or len(sizes) == 1:
            return group
        inside = group == small[np.argmin(sizes[small])]  # the smallest first, ties to the lowest number
        outside = np.flatnonzero(~inside)
        nearest_outside = outside[similarity[np.ix_(inside, outside)].max(axis=0).argmax()]
        group = np.unique(np.where(inside, group[nearest_outside], group), return_inverse=True)[1]
