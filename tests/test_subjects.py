"""Subjects from the pixels when file names say nothing: chains of neighbouring slices."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.core.params import parse_params
from pipeline.core.paths import truth_file
from pipeline.mri.dedupe import build_index, scan_files
from pipeline.mri.subjects import EVIDENCE, _shift_ratio, _uncross, subjects_from_pixels
from pipeline.mri.synth import write_archive, write_truth
from pipeline.mri.truth import score_against_truth, subjects_across_splits
from pipeline.sources.folder import PIXELS, index_folder
from pipeline.tables.index import IndexRow, read_index, write_index
from pipeline.tables.split import assign_splits, split_metrics
from tests.conftest import raw_params
from tests.other_archive import write_other_archive

# 17 subjects whose originals' names carry no subject; seed 11 is one where linking each slice to
# its two most similar (the rule until 2026-12-01) merged 4 groups of subjects.
OPAQUE_SYNTH = {
    "subjects": {"NonDemented": 6, "VeryMildDemented": 5, "MildDemented": 4, "ModerateDemented": 2},
    "slices": 8,
    "copies_per_class": 10,
    "duplicates": 1,
    "opaque_names": True,
    "seed": 11,
}


@pytest.fixture(scope="module")
def opaque_params():
    return parse_params(raw_params(synth=OPAQUE_SYNTH, dedupe={"slices_per_subject": 8}))


@pytest.fixture(scope="module")
def opaque_archive(tmp_path_factory, opaque_params) -> Path:
    root = tmp_path_factory.mktemp("opaque") / "demo"
    write_truth(truth_file(root), write_archive(root, opaque_params.data.classes, opaque_params.synth))
    return root


@pytest.fixture(scope="module")
def opaque_split(opaque_archive, opaque_params, tmp_path_factory):
    """(index rows, dedupe report, split) of the opaque archive, through the index file as the stages pass it."""
    rows, report = build_index(opaque_archive, opaque_params.data.classes, opaque_params.dedupe)
    index = tmp_path_factory.mktemp("index") / "index.csv"
    write_index(index, rows)
    params = opaque_params
    split = assign_splits(read_index(index), params.data.classes, params.split.ratios, params.seed,
                          params.split.copies_in_train)
    return rows, report, split


def test_opaque_names_fall_to_the_pixels(opaque_split, opaque_params):
    _, report, _ = opaque_split
    for label in opaque_params.data.classes:
        assert report["subject_rules"][label]["rule"] == "pixels", report["subject_rules"]
        assert report["subject_rules"][label]["note"] == "no name rule fits these file names"


def test_no_true_subject_in_two_splits_and_most_recovered(opaque_split, opaque_archive):
    rows, _, split = opaque_split
    scores = score_against_truth(rows, truth_file(opaque_archive))
    assert scores["true_subjects"] == 17
    assert scores["true_subjects_split"] == 0, scores
    assert scores["true_subjects_recovered"] >= 0.8 * scores["true_subjects"], scores
    paths = dict(zip(split.rows["path"], split.rows["split"]))
    assert subjects_across_splits(paths, truth_file(opaque_archive))["true_subjects_in_several_splits"] == 0


def test_every_class_of_three_subjects_fills_three_splits(opaque_split, opaque_params):
    _, _, split = opaque_split
    metrics = split_metrics(split, opaque_params.data.classes)["splits"]
    for label, n_subjects in opaque_params.synth.subjects:
        if n_subjects >= 3:
            assert all(metrics[part]["subjects"][label] >= 1 for part in ("train", "val", "test")), (label, metrics)


def test_ids_do_not_depend_on_the_input_order(opaque_archive, opaque_split, opaque_params):
    rows, _, _ = opaque_split
    originals = [row for row in rows if row.kind == "original" and row.status == "ok"]
    scans = scan_files([(opaque_archive / row.path, np.zeros(1)) for row in originals],
                       [opaque_archive / row.path for row in originals], workers=1)
    views = np.stack([scan.views[0] for scan in scans])
    names, labels = [row.path for row in originals], [row.label for row in originals]
    settings = (opaque_params.dedupe.slices_per_subject, opaque_params.dedupe.separation)
    ids, _ = subjects_from_pixels(names, labels, views, *settings)
    assert ids == [row.subject for row in originals]  # the dedupe stage calls it alike
    order = np.random.default_rng(0).permutation(len(names))
    shuffled, _ = subjects_from_pixels([names[i] for i in order], [labels[i] for i in order], views[order], *settings)
    assert dict(zip([names[i] for i in order], shuffled)) == dict(zip(names, ids))


def test_slices_chain_into_subjects_of_their_length():
    # Ten slices on a line, subjects of 5: one chain would be two subjects, so it is two chains, evenly spaced or
    # with a gap of 2 steps after the fifth.
    names = [f"slice{index}" for index in range(10)]
    points = [(x, 0.0) for x in range(5)] + [(x, 0.0) for x in range(6, 11)]
    ids, evidence = subjects_from_pixels(names, ["A"] * 10, on_a_plane(points), 5, 1.1)
    assert ids == ["A/g000"] * 5 + ["A/g001"] * 5 and evidence["merged_as_ambiguous"] == 0
    ids, evidence = subjects_from_pixels(names, ["A"] * 10, on_a_plane([(x, 0.0) for x in range(10)]), 5, 1.1)
    assert ids == ["A/g000"] * 5 + ["A/g001"] * 5 and evidence["merged_as_ambiguous"] == 0


def test_two_chains_are_merged_when_their_end_slices_could_trade_places():
    # Subjects of 5 along x at z = 0 and z = 10; the fifth slices at z = 5, either side in y: each as near the
    # other chain's fourth slice as its own, so no one can tell which end is whose.
    chains = [(x, 0.0, 0.0) for x in range(4)] + [(x, 0.0, 10.0) for x in range(4)]
    names = [f"slice{index}" for index in range(10)]
    ids, evidence = subjects_from_pixels(names, ["A"] * 10, on_a_plane(chains + [(4, 3, 5), (4, -3, 5)]), 5, 1.1)
    assert ids == ["A/g000"] * 10 and evidence["merged_as_ambiguous"] == 1
    clear = chains + [(4, 3, 4), (4, -3, 6)]  # each nearer its own chain: swapped, the links are 1.33 times as long
    ids, evidence = subjects_from_pixels(names, ["A"] * 10, on_a_plane(clear), 5, 1.1)
    assert ids == ["A/g000"] * 4 + ["A/g001"] * 4 + ["A/g000", "A/g001"] and evidence["merged_as_ambiguous"] == 0
    assert subjects_from_pixels(names, ["A"] * 10, on_a_plane(clear), 5, 1.4)[0] == ["A/g000"] * 10


def test_two_chains_are_merged_when_an_end_slice_lies_about_as_near_the_other_chain_as_its_own():
    # Subjects of 5 along x at y = 0 and y = 10; A's fifth slice 3 above A's fourth (3 steps: far from the rest),
    # B's 3.8 below B's fourth and 3.2 from A's fifth: no trade is cheap, but A's end is as near B's end (1.07 x
    # its own link) as its own.
    names = [f"slice{index}" for index in range(10)]
    points = [(x, 0.0) for x in range(4)] + [(3, 3)] + [(x, 10.0) for x in range(4)] + [(3, 6.2)]
    assert subjects_from_pixels(names, ["A"] * 10, on_a_plane(points), 5, 1.1)[0] == ["A/g000"] * 10
    points[-1] = (3, 7)  # 4 from A's end: 1.33 x its link
    assert subjects_from_pixels(names, ["A"] * 10, on_a_plane(points), 5, 1.1)[0] == ["A/g000"] * 5 + ["A/g001"] * 5


def test_crossed_chains_are_reconnected_where_that_shortens_their_links():
    # Two lines of 6 slices, far apart; the chains given swap their halves, which their links show.
    points = [(x, 0.0) for x in range(6)] + [(x, 20.0) for x in range(6)]
    distance = np.array([[np.hypot(p[0] - q[0], p[1] - q[1]) for q in points] for p in points])
    chains = [np.array([0, 1, 2, 9, 10, 11]), np.array([6, 7, 8, 3, 4, 5])]
    assert _uncross(distance, chains, 6) == 1
    assert sorted(sorted(chain.tolist()) for chain in chains) == [list(range(6)), list(range(6, 12))]


def test_chains_crossed_at_two_places_show_how_cheaply_they_could_be_two_others():
    # Lines A and B of 6 slices, 10 apart; the chains given are A4-A2 + B3-B5 and A5 + B0-B2 + A1-A0. Crossed after
    # A2 and after B2, then A5 handed to A4's end: A and B again, with links a tenth as long as those cut.
    points = [(x, 0.0) for x in range(6)] + [(x, 10.0) for x in range(6)]
    distance = np.array([[np.hypot(p[0] - q[0], p[1] - q[1]) for q in points] for p in points])
    one, two = np.array([4, 3, 2, 9, 10, 11]), np.array([5, 6, 7, 8, 1, 0])
    assert _shift_ratio(distance, one, two) == pytest.approx(3 / (np.hypot(1, 10) * 2 + np.hypot(5, 10)), abs=1e-6)


def test_chains_that_are_not_whole_subjects_are_merged_with_their_nearest_such_group():
    # Subjects of 5 along x at z = 0 and z = 10, their fifth slices nearer each other (0.8) than any step (1):
    # linked first, they leave chains of 4, 2 and 4, merged into one group; a third subject far off stays apart.
    points = ([(x, 0.0, 0.0) for x in range(4)] + [(4, 0, 4.6), (4, 0, 5.4)] + [(x, 0.0, 10.0) for x in range(4)]
              + [(x, 20.0, 0.0) for x in range(5)])
    names = [f"slice{index:02d}" for index in range(15)]
    ids, evidence = subjects_from_pixels(names, ["A"] * 15, on_a_plane(points), 5, 1.1)
    assert ids == ["A/g000"] * 10 + ["A/g001"] * 5 and evidence["merged_to_whole_subjects"] == 2


def on_a_plane(points: list[tuple[float, ...]]) -> np.ndarray:
    """Unit views of points (2 or 3 coordinates), near enough that their distances are the points' (x 0.01)."""
    views = np.column_stack([np.ones(len(points)), 0.01 * np.array(points, float)])
    return (views / np.linalg.norm(views, axis=1, keepdims=True)).astype(np.float32)


def test_truth_scores_count_recovered_split_and_mixed_subjects_with_examples(tmp_path):
    # True subjects a, b, c, d; found: a whole in g0, b over g1 and g2, c and d together in g3.
    placed = {"a0": "g0", "a1": "g0", "b0": "g1", "b1": "g2", "c0": "g3", "d0": "g3"}
    truth = tmp_path / "truth.csv"
    truth.write_text("path,kind,label,source,subject\n"
                     + "".join(f"{path},original,X,{path},{path[0]}\n" for path in [*placed, "e0"]))
    rows = [IndexRow(path, "X", "original", path, found) for path, found in placed.items()]
    rows.append(IndexRow("e0", "X", "original", status="rejected", reason="unreadable"))
    scores = score_against_truth(rows, truth)
    assert (scores["true_subjects"], scores["found_subjects"]) == (4, 4)
    assert scores["true_subjects_recovered"] == 1
    assert (scores["true_subjects_split"], scores["found_subjects_mixed"]) == (1, 1)
    assert scores["examples"] == {"true_subjects_split": {"b": ["g1", "g2"]}, "found_subjects_mixed": {"g3": ["c", "d"]}}


def test_a_folder_of_opaque_slices_is_grouped_into_subjects_from_pixels(opaque_archive, opaque_params, tmp_path):
    """`data.source: folder` with `data.groups: pixels`: the originals alone, in class folders, no group file."""
    folder = Path(shutil.copytree(opaque_archive / "OriginalDataset", tmp_path / "slices"))
    rows, _, info = index_folder(folder, opaque_params.data.classes, Path(PIXELS),
                                 opaque_params.dedupe.slices_per_subject, opaque_params.dedupe.separation)
    truth = {path.removeprefix("OriginalDataset/"): subject for path, subject in
             pd.read_csv(truth_file(opaque_archive)).set_index("path")["subject"].items()}
    found = {row.path: row.subject for row in rows if row.status == "ok"}
    assert len(found) == sum(path in truth for path in found) == opaque_params.synth.slices * 17
    by_true = {}
    for path, subject in found.items():
        by_true.setdefault(truth[path], set()).add(subject)
    assert all(len(groups) == 1 for groups in by_true.values())  # no true subject spread over two groups
    members = {}
    for path, subject in found.items():
        members.setdefault(subject, set()).add(truth[path])
    recovered = sum(len(members[next(iter(groups))]) == 1 for groups in by_true.values())
    assert recovered >= 0.8 * len(by_true) and info.channels == 1


OTHER_SUBJECTS = {"NonDemented": 4, "VeryMildDemented": 3, "MildDemented": 3, "ModerateDemented": 2}


def test_an_archive_from_another_generator_keeps_every_subject_in_one_split(tmp_path):
    """Procedural anatomy per subject, 1-5 mm slices, warps, bias, noise (`tests/other_archive.py`), opaque names."""
    root = tmp_path / "other"
    write_other_archive(root, OTHER_SUBJECTS, 16, 4, seed=0, shape=(64, 54), pixel=3.25)
    params = parse_params(raw_params(dedupe={"slices_per_subject": 16, "workers": 1}))
    rows, report = build_index(root, params.data.classes, params.dedupe)
    assert set(report["subject_rules"]["NonDemented"]["weak_evidence"]) == set(EVIDENCE)
    scores = score_against_truth(rows, truth_file(root))
    assert scores["true_subjects"] == 12 and scores["true_subjects_split"] == 0, scores
    assert scores["true_subjects_recovered"] >= 6, scores
