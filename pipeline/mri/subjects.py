"""Group a class's originals into subjects: a name rule proposes, the pixels decide.

A rule is accepted when, for most of the neighbour links it proposes (slice k to slice k+1 of
one subject), the proposed next slice is the most similar of all the originals at that slice
position, as neighbouring slices of one subject are far more alike than those of two. When no
rule applies or the pixels refute it, the pixels alone lay the slices out in chains of a
subject's length (`subjects_from_pixels`), merging rather than splitting where unsure: the safe
side for leakage.
"""

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SLICE_MAJOR = re.compile(r"^(?P<prefix>[A-Za-z_\-]*?)(?P<number>\d+)$")
SLICE_OF_SUBJECT = re.compile(r"^(?P<slice>\d+) \((?P<subject>\d+)\)$")
CONFIRMATION = 0.9  # share of a rule's neighbour links the pixels must confirm
UNSURE = 2.0  # an end slice whose link is over UNSURE times the next link in may belong to another chain
THIN = 1.25  # two chains kept apart by less than THIN x dedupe.separation rest on weak evidence
TIE = 1e-9  # the least distance between two slices: identical views are still linked
EVIDENCE = ("reconnected", "kept_on_a_thin_margin", "merged_to_whole_subjects", "merged_as_ambiguous")


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
    """Subject ids (`<label>/g<n>`) for slices whose names say nothing, and how many decisions rested on weak evidence.

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
    """Group numbers of the rows of `views`, and counts of the decisions taken on weak evidence.

    A subject is a chain of `slices_per_subject` slices, each next to the slice above and below it,
    so the slices are laid out as chains, not clusters: shortest links first, each slice linked to
    at most two others, no loops and no chain past a subject's length (`_chains_of_slices`); two
    whole chains that cross are reconnected where that shortens their links (`_uncross`). Then
    every doubt merges (`_merge_unclear`): a merged group costs balance, a split subject is leakage.
    """
    n = len(views)
    counts = Counter()
    if n < 2:
        return np.zeros(n, int), counts
    distance = np.maximum(np.sqrt(np.maximum(2.0 - 2.0 * (views @ views.T), 0.0)), TIE)
    np.fill_diagonal(distance, 0.0)
    chains = _chains_of_slices(distance, slices_per_subject)
    counts["reconnected"] = _uncross(distance, chains, slices_per_subject)
    return _merge_unclear(distance, chains, slices_per_subject, separation, counts), counts


def _chains_of_slices(distance: np.ndarray, length: int) -> list[np.ndarray]:
    """Slices in chains (row numbers in chain order): links shortest first, at most two per slice, no loop,
    no chain longer than `length`."""
    n = len(distance)
    start, end = np.triu_indices(n, 1)
    links = Counter()
    neighbours = [[] for _ in range(n)]
    chain_of, members = list(range(n)), {index: [index] for index in range(n)}
    unmade = n - -(-n // length)  # the most links chains of at most `length` slices can have
    for link in np.argsort(distance[start, end], kind="stable"):
        if not unmade:
            break
        a, b = start[link], end[link]
        ca, cb = chain_of[a], chain_of[b]
        if links[a] == 2 or links[b] == 2 or ca == cb or len(members[ca]) + len(members[cb]) > length:
            continue
        links[a] += 1
        links[b] += 1
        unmade -= 1
        neighbours[a].append(b)
        neighbours[b].append(a)
        for index in members[cb]:
            chain_of[index] = ca
        members[ca] += members.pop(cb)
    chains = []
    for group in members.values():
        walk = [min(index for index in group if links[index] < 2)]
        while len(walk) < len(group):
            walk.append(next(index for index in neighbours[walk[-1]] if len(walk) < 2 or index != walk[-2]))
        chains.append(np.array(walk))
    return chains


def _swap_ratio(distance: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The chains a and b of one length with end parts of one length traded (each cut off at either end and joined
    at either end of the other, either way round), the trade whose new links are shortest against the two cut:
    (that ratio, new a, new b)."""
    best = (np.inf, a, b)
    first = np.arange(1, len(a))  # where the traded part starts: one's and two's slices from there on are traded
    for one in (a, a[::-1]):
        for two in (b, b[::-1]):
            cut = distance[one[first - 1], one[first]] + distance[two[first - 1], two[first]]
            ratio = (_join(distance, one[0], one[first - 1], two[first], two[-1])
                     + _join(distance, two[0], two[first - 1], one[first], one[-1])) / cut
            index = int(np.argmin(ratio))
            if ratio[index] < best[0]:
                at = first[index]
                best = (float(ratio[index]), _joined(distance, one[:at], two[at:]), _joined(distance, two[:at], one[at:]))
    return best


def _shift_ratio(distance: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Chains a and b of one length crossed over at two cuts of different places, the longer result giving the
    surplus slices at one of its ends to an end of the other: the least ratio of the three new links to the three
    cut (`_swap_ratio` covers cuts at one place)."""
    best = np.inf
    n = len(a)
    k, m = np.meshgrid(np.arange(1, n), np.arange(1, n), indexing="ij")  # one cut before a[k], one before b[m]
    surplus = k - m
    for one in (a, a[::-1]):
        for two in (b, b[::-1]):
            cross = distance[one[k - 1], two[m]] + distance[two[m - 1], one[k]]
            cut = distance[one[k - 1], one[k]] + distance[two[m - 1], two[m]]
            for long, short, sign in ((one, two, 1), (two, one, -1)):  # long = the chain whose head is longer
                give = np.maximum(sign * surplus, 1)  # slices given from the head of the longer result
                # the longer result: long[:cut] + the other's tail; its head part long[:give] moves to the other result,
                # whose ends are short[0] and long[-1]
                moved = distance[long[give - 1], long[give]]
                join = np.minimum(np.minimum(distance[long[0], short[0]], distance[long[give - 1], short[0]]),
                                  np.minimum(distance[long[0], long[-1]], distance[long[give - 1], long[-1]]))
                # or its tail part (the other's last `give` slices) moves
                tail = short[n - give]
                moved_tail = distance[short[n - give - 1], tail]
                join_tail = np.minimum(np.minimum(distance[tail, short[0]], distance[short[-1], short[0]]),
                                       np.minimum(distance[tail, long[-1]], distance[short[-1], long[-1]]))
                valid = sign * surplus > 0
                for moved_link, joined in ((moved, join), (moved_tail, join_tail)):
                    ratio = (cross + joined) / (cut + moved_link)
                    if valid.any():
                        best = min(best, float(ratio[valid].min()))
    return best


def _join(distance: np.ndarray, rest_first, rest_last, part_first, part_last) -> np.ndarray:
    """The shortest link between an end of a chain's rest and an end of a part joined to it."""
    return np.minimum(np.minimum(distance[rest_last, part_first], distance[rest_last, part_last]),
                      np.minimum(distance[rest_first, part_last], distance[rest_first, part_first]))


def _joined(distance: np.ndarray, rest: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Chain `part` joined to chain `rest` by the shortest link between their ends."""
    ways = [(distance[rest[-1], part[0]], np.r_[rest, part]), (distance[rest[-1], part[-1]], np.r_[rest, part[::-1]]),
            (distance[rest[0], part[-1]], np.r_[part, rest]), (distance[rest[0], part[0]], np.r_[part[::-1], rest])]
    return min(ways, key=lambda way: way[0])[1]


def _uncross(distance: np.ndarray, chains: list[np.ndarray], length: int) -> int:
    """Swap the parts of whole chains (in place) past the cut that shortens their links most, while one does."""
    whole = [index for index, chain in enumerate(chains) if len(chain) == length]
    swaps = 0
    for _ in range(len(chains) * length):  # each swap shortens the links, so this ends; the bound is for safety
        found = False
        for position, i in enumerate(whole):
            for j in whole[position + 1:]:
                ratio, a, b = _swap_ratio(distance, chains[i], chains[j])
                if ratio < 1.0 - TIE:
                    chains[i], chains[j] = a, b
                    swaps += 1
                    found = True
        if not found:
            break
    return swaps


def _end_ratio(distance: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """How much farther than its own link an end slice of a or b lies from an end of the other, for end slices
    whose link is over UNSURE times the next link in: the least such ratio. Such an end (the top or bottom of a
    brain, small and plain, far from the rest) may belong to either chain even where trading it costs more."""
    best = np.inf
    for one, two in ((a, b), (b, a)):
        for end, inner, next_in in ((one[0], one[1], one[2]), (one[-1], one[-2], one[-3])):
            if distance[end, inner] > UNSURE * distance[inner, next_in]:
                best = min(best, float(min(distance[end, two[0]], distance[end, two[-1]]) / distance[end, inner]))
    return best


def _rejoin_ratio(distance: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The shortest way to rejoin chains a and b of any length, against the links it cuts: two cuts crossed over
    (new links / old links, either way round), or a part of one chain cut off and joined to an end of the other."""
    ratios = [np.inf]
    for one, two in ((a, b), (b, a)):
        if len(one) > 1:
            link = distance[one[:-1], one[1:]]
            for end in (two[0], two[-1]):
                ratios.append(float((np.minimum(distance[end, one[:-1]], distance[end, one[1:]]) / link).min()))
    if min(len(a), len(b)) > 1:
        old = distance[a[:-1], a[1:]][:, None] + distance[b[:-1], b[1:]][None, :]
        for other in (b, b[::-1]):
            new = distance[np.ix_(a[:-1], other[1:])] + distance[np.ix_(a[1:], other[:-1])]
            ratios.append(float((new / old).min()))
    return min(ratios)


def _merge_unclear(distance: np.ndarray, chains: list[np.ndarray], length: int, separation: float,
                   counts: Counter) -> np.ndarray:
    """Group number per slice: the chains merged wherever the pixels do not clearly keep them apart.

    A group that is not a whole number of subjects holds a piece of one: it is merged with its
    nearest such group until the sizes add up. Two whole chains, each a group of its own, stay apart
    only when every trade of their end parts (`_swap_ratio`) and every crossing at two places with
    the surplus slices handed over (`_shift_ratio`), both of which keep a subject's length, makes
    links at least `separation` times as long as those it replaces, and no end slice of either, far
    from the rest of its chain, lies less than `separation` times its own link from an end of the
    other (`_end_ratio`). Any other two
    chains of two groups, where the lengths are no guide, stay apart only when every way to rejoin
    them (`_rejoin_ratio`) is that much longer. Repeated until nothing merges.
    """
    group = np.arange(len(chains))
    size = np.array([len(chain) for chain in chains])
    nearest = distance + np.diag(np.full(len(distance), np.inf))
    while True:
        merged = False
        while True:
            totals = np.bincount(group, weights=size, minlength=len(chains)).astype(int)
            unexplained = np.flatnonzero(totals % length)
            if len(unexplained) < 2:
                break
            piece = unexplained[np.argmin(totals[unexplained])]  # the smallest first, ties to the lowest number
            rows = np.concatenate([chains[i] for i in np.flatnonzero(group == piece)])
            gap = [nearest[np.ix_(rows, np.concatenate([chains[i] for i in np.flatnonzero(group == other)]))].min()
                   for other in unexplained[unexplained != piece]]
            group[group == piece] = unexplained[unexplained != piece][np.argmin(gap)]
            counts["merged_to_whole_subjects"] += 1
            merged = True
        totals = np.bincount(group, weights=size, minlength=len(chains)).astype(int)
        for i in range(len(chains)):
            for j in range(i + 1, len(chains)):
                if group[i] == group[j]:
                    continue
                alone = totals[group[i]] == totals[group[j]] == size[i] == size[j] == length
                ratio = (min(_swap_ratio(distance, chains[i], chains[j])[0], _shift_ratio(distance, chains[i], chains[j]),
                             _end_ratio(distance, chains[i], chains[j]))
                         if alone else _rejoin_ratio(distance, chains[i], chains[j]))
                if ratio < separation:
                    group[group == group[j]] = group[i]
                    totals = np.bincount(group, weights=size, minlength=len(chains)).astype(int)
                    counts["merged_as_ambiguous"] += 1
                    merged = True
                elif alone and ratio < THIN * separation:
                    counts["kept_on_a_thin_margin"] += 1
        if not merged:
            labels = np.zeros(len(distance), int)
            for chain, number in zip(chains, group):
                labels[chain] = number
            return np.unique(labels, return_inverse=True)[1]
