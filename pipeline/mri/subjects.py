"""Group a class's originals into subjects: a name rule proposes, the pixels decide.

A rule is accepted when, for most of the neighbour links it proposes (slice k to slice k+1 of
one subject), the proposed next slice is the most similar of all the originals at that slice
position, as neighbouring slices of one subject are far more alike than those of two. When no
rule applies or the pixels refute it, the pixels alone chain slices into subjects
(`subjects_from_pixels`), merging rather than splitting where unsure: the safe side for leakage.
"""

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

SLICE_MAJOR = re.compile(r"^(?P<prefix>[A-Za-z_\-]*?)(?P<number>\d+)$")
SLICE_OF_SUBJECT = re.compile(r"^(?P<slice>\d+) \((?P<subject>\d+)\)$")
CONFIRMATION = 0.9  # share of a rule's neighbour links the pixels must confirm
MIN_SHARE = 0.75  # a cut leaving fewer than this share of a subject's slices on a side is a piece broken off
THIN = 1.25  # a cut whose link is less than THIN x dedupe.separation times its ends' steps rests on weak evidence
TIE = 1e-9  # the least distance given to a tree link: identical views are still linked
EVIDENCE = ("kept_though_apart", "cut_on_a_thin_margin", "merged_to_whole_subjects", "merged_as_ambiguous")


@dataclass(frozen=True)
class Grouping:
    subjects: list[str]  # subject id per original, in input order
    rule: str  # 'slice-major', 'slice (subject)' or 'pixels'
    note: str  # how the rule fared against the pixels
    evidence: dict = field(default_factory=dict)  # with the pixel rule: links decided on weak evidence (EVIDENCE)


def fits_a_name_rule(stem: str) -> bool:
    """Whether a file stem could follow one of the name rules (`nonDem12`, `12 (3)`)."""
    return bool(SLICE_MAJOR.match(stem) or SLICE_OF_SUBJECT.match(stem))


def group_subjects(label: str, stems: list[str], views: np.ndarray, slices_per_subject: int,
                   separation: float) -> Grouping:
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
    subjects, evidence = subjects_from_pixels(stems, [label] * len(stems), views, slices_per_subject, separation)
    return Grouping(subjects, "pixels", note, evidence)


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


def subjects_from_pixels(names: list[str], labels: list[str], views: np.ndarray, slices_per_subject: int,
                         separation: float) -> tuple[list[str], dict]:
    """Subject ids (`<label>/g<n>`) for slices whose names say nothing, and how many links rested on weak evidence.

    `views`: unit-norm upright views (`fingerprint.fingerprints`), a row per name; `names` are
    unique and only number the groups, so ids do not depend on the input order. Per label,
    `_chains` groups the slices (see there); the counts of its decisions are summed over labels.
    """
    order = sorted(range(len(names)), key=names.__getitem__)
    subjects = [""] * len(names)
    evidence = Counter()
    for label in sorted(set(labels)):
        members = [index for index in order if labels[index] == label]
        groups, counts = _chains(views[members], slices_per_subject, separation)
        evidence.update(counts)
        first = {}
        for group in groups:  # numbered by their first name
            first.setdefault(group, len(first))
        for index, group in zip(members, groups):
            subjects[index] = f"{label}/g{first[group]:03d}"
    return subjects, {key: evidence[key] for key in EVIDENCE}


def _chains(views: np.ndarray, slices_per_subject: int, separation: float) -> tuple[np.ndarray, Counter]:
    """Group numbers of the rows of `views`, and counts of the links decided on weak evidence.

    Calibrated on the archive itself, not on one similarity: a slice's step is the distance to its
    nearest slice (within a subject, the slice above or below it), and the links are the edges of
    the minimum spanning tree over all slices (the single-linkage chains). Longest first, a link is
    cut only when it is at least `separation` times the steps of both its ends (the pixels clearly
    separate the two sides) and both sides keep at least MIN_SHARE of a subject's slices. A subject
    has `slices_per_subject` slices, so a group of any other multiple holds a piece of a subject
    cut off from the rest: such groups are merged with their most similar such group until the
    sizes add up. Last, a cut holds only where every slice on either side is at least `separation`
    times closer to its own group than to the other (`_merge_ambiguous`): end slices of two
    subjects can be alike enough to trade places while both groups keep whole-subject sizes.
    Every doubt merges: a merged group costs balance, a split subject is leakage.
    """
    n = len(views)
    counts = Counter()
    if n < 2:
        return np.zeros(n, int), counts
    distance = np.sqrt(np.maximum(2.0 - 2.0 * (views @ views.T), 0.0))
    np.fill_diagonal(distance, np.inf)
    step = distance.min(axis=1)
    tree = minimum_spanning_tree(np.where(np.isfinite(distance), np.maximum(distance, TIE), 0.0)).tocoo()
    start, end, length = tree.row, tree.col, tree.data
    ratio = length / np.maximum(step[start], step[end])
    keep = np.ones(len(length), bool)
    smallest = max(2, int(MIN_SHARE * slices_per_subject))
    for link in np.argsort(-length, kind="stable"):
        if ratio[link] < separation:
            continue
        keep[link] = False
        group = _components(n, start[keep], end[keep])
        if min(np.sum(group == group[start[link]]), np.sum(group == group[end[link]])) < smallest:
            keep[link] = True
            counts["kept_though_apart"] += 1
        elif ratio[link] < THIN * separation:
            counts["cut_on_a_thin_margin"] += 1
    group = _components(n, start[keep], end[keep])
    similarity = -distance
    while True:
        sizes = np.bincount(group)
        unexplained = np.flatnonzero(sizes % slices_per_subject)
        if len(unexplained) < 2:
            return _merge_ambiguous(distance, group, separation, counts), counts
        piece = unexplained[np.argmin(sizes[unexplained])]  # the smallest first, ties to the lowest number
        others = unexplained[unexplained != piece]
        nearest = others[np.argmax([similarity[np.ix_(group == piece, group == other)].max() for other in others])]
        group = np.unique(np.where(group == piece, nearest, group), return_inverse=True)[1]
        counts["merged_to_whole_subjects"] += 1


def _merge_ambiguous(distance: np.ndarray, group: np.ndarray, separation: float, counts: Counter) -> np.ndarray:
    """Merge groups until every slice is at least `separation` times closer to its own group than to any other."""
    while True:
        if group.max() < 1:
            return group
        nearest = np.column_stack([distance[:, group == other].min(axis=1) for other in range(group.max() + 1)])
        own = nearest[np.arange(len(group)), group].copy()
        nearest[np.arange(len(group)), group] = np.inf
        ratio = nearest / own[:, None]
        slice_, other = np.unravel_index(np.argmin(ratio), ratio.shape)
        if ratio[slice_, other] >= separation:
            return group
        group = np.unique(np.where(group == other, group[slice_], group), return_inverse=True)[1]
        counts["merged_as_ambiguous"] += 1


def _components(n: int, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Connected component number of each of n nodes linked by the edges (start, end)."""
    graph = coo_matrix((np.ones(len(start)), (start, end)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
