"""The dedupe stage: accounting for every file, tracing copies, grouping subjects."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.__main__ import main as cli
from pipeline.core.errors import PipelineError
from pipeline.core.params import parse_params
from pipeline.core.paths import truth_file
from pipeline.mri.dedupe import build_index, reference_shape
from pipeline.mri.matching import match_copies, match_copies_per_subject
from pipeline.mri.synth import write_archive, write_truth
from pipeline.mri.truth import score_against_truth, subjects_across_splits
from pipeline.tables.index import read_index, write_index
from pipeline.tables.split import assign_splits
from tests.bad_files import plant_bad_files
from tests.conftest import files_on_disk, raw_params
from tests.other_generator import keras_style_copy, other_copy, rewrite_copies

EARLIER_DEMO_SUBJECTS = {"NonDemented": 10, "VeryMildDemented": 7, "MildDemented": 4, "ModerateDemented": 2}


@pytest.fixture(scope="module")
def accuracy_params():
    """The committed params: the judged figures are those of the demo archive itself."""
    return parse_params(raw_params())


@pytest.fixture(scope="module")
def accuracy_archive(tmp_path_factory, accuracy_params) -> Path:
    root = tmp_path_factory.mktemp("accuracy") / "demo"
    write_truth(truth_file(root), write_archive(root, accuracy_params.data.classes, accuracy_params.synth))
    return root


def copy_archive(root: Path, destination: Path) -> Path:
    target = destination / root.name
    shutil.copytree(root, target)
    shutil.copy(truth_file(root), truth_file(target))
    return target


def assert_judged_figures(root: Path, params, tmp_path: Path) -> dict:
    """The issue's figures for one archive, the split by subject included."""
    rows, _ = build_index(root, params.data.classes, params.dedupe)
    scores = score_against_truth(rows, truth_file(root))
    assert scores["copy_subject_accuracy"] >= 0.995, scores
    assert scores["copy_source_accuracy"] >= 0.97, scores
    assert scores["orphan_rate"] <= 0.02, scores
    assert scores["true_subjects_split"] == 0, scores
    write_index(tmp_path / "index.csv", rows)
    split = assign_splits(read_index(tmp_path / "index.csv"), params.data.classes, params.split.ratios, params.seed,
                          params.split.copies_in_train)
    paths = dict(zip(split.rows["path"], split.rows["split"]))
    assert subjects_across_splits(paths, truth_file(root))["true_subjects_in_several_splits"] == 0
    return scores


def test_traces_copies_of_the_synth_generator(accuracy_archive, accuracy_params, tmp_path):
    scores = assert_judged_figures(accuracy_archive, accuracy_params, tmp_path)
    assert scores["found_subjects_mixed"] == 0, scores


@pytest.mark.parametrize("make_copy", [other_copy, keras_style_copy])
def test_traces_copies_of_an_unseen_generator(accuracy_archive, accuracy_params, tmp_path, make_copy):
    root = copy_archive(accuracy_archive, tmp_path)
    rewrite_copies(root, truth_file(root), seed=11, make_copy=make_copy)
    assert_judged_figures(root, accuracy_params, tmp_path)


def test_traces_copies_of_the_earlier_demo_where_8_candidates_leaked(tmp_path):
    """The demo of 23 subjects (until 2026-11-30): with dedupe.candidates 8, a copy of a val subject went to train."""
    params = parse_params(raw_params(synth={"subjects": EARLIER_DEMO_SUBJECTS}))
    root = tmp_path / "demo"
    write_truth(truth_file(root), write_archive(root, params.data.classes, params.synth))
    assert_judged_figures(root, params, tmp_path)


def test_every_file_has_exactly_one_row(tiny_archive, tiny_params):
    rows, report = build_index(tiny_archive, tiny_params.data.classes, tiny_params.dedupe)
    assert [row.path for row in rows] == sorted(files_on_disk(tiny_archive))
    assert report["files"]["used"] + report["files"]["set_aside"] == report["files"]["found"] == len(rows)


def test_pixel_identical_copies_are_duplicates_of_one_kept_file(tiny_archive, tiny_params):
    rows, _ = build_index(tiny_archive, tiny_params.data.classes, tiny_params.dedupe)
    by_path = {row.path: row for row in rows}
    duplicates = [row for row in rows if row.status == "duplicate"]
    assert len(duplicates) == tiny_params.synth.duplicates
    for row in duplicates:
        kept = by_path[row.reason.removeprefix("pixel-identical to ")]
        assert kept.status == "ok" and (row.source, row.subject) == (kept.source, kept.subject)


def test_bad_files_are_rejected_with_reasons_and_counted(tiny_archive, tiny_params, tmp_path):
    root = copy_archive(tiny_archive, tmp_path)
    class_dir = root / "OriginalDataset" / "MildDemented"
    expected = plant_bad_files(class_dir)
    (root / "OriginalDataset" / "EmptyFolder" / "MildDemented").mkdir(parents=True)
    (root / "README.txt").write_text("archive notes\n")
    rows, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    by_path = {row.path: row for row in rows}
    for name, word in expected.items():
        row = by_path[f"OriginalDataset/MildDemented/{name}"]
        assert row.status == "rejected" and word in row.reason, row
    assert by_path["README.txt"].status == "rejected" and "class folder" in by_path["README.txt"].reason
    assert report["empty_class_folders"] == ["OriginalDataset/EmptyFolder/MildDemented"]
    assert sorted(by_path) == sorted(files_on_disk(root))
    assert sum(report["status"]["rejected"].values()) == len(expected) + 1


def test_same_pixels_under_two_labels_is_a_conflict(tiny_archive, tiny_params, tmp_path):
    root = copy_archive(tiny_archive, tmp_path)
    original = sorted((root / "OriginalDataset" / "NonDemented").iterdir())[0]
    planted = root / "OriginalDataset" / "MildDemented" / "planted.jpg"
    shutil.copy(original, planted)
    rows, _ = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    by_path = {row.path: row for row in rows}
    for path in (original.relative_to(root).as_posix(), "OriginalDataset/MildDemented/planted.jpg"):
        assert by_path[path].status == "conflict" and "another label" in by_path[path].reason


@pytest.mark.parametrize("layout", ["v2", "4-class", "plain"])
def test_reads_every_layout(tiny_archive, tiny_params, tmp_path, layout):
    root = tmp_path / "archive"
    for source in files_on_disk(tiny_archive):
        kind = "original" if source.startswith("OriginalDataset") else "copy"
        label, name = Path(source).parts[-2:]
        folder = {
            "v2": {"original": f"nested/data/val/{label}", "copy": f"nested/data/train/{label}"},
            "4-class": {"original": f"train/{label}", "copy": None},
            "plain": {"original": label, "copy": label},
        }[layout][kind]
        if folder:
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_archive / source, root / folder / name)
    rows, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    assert set(report["layouts"]) == {layout}
    kinds = {row.kind for row in rows}
    assert kinds == ({"original"} if layout == "4-class" else {"original", "copy"})
    assert all(row.status in {"ok", "duplicate", "orphan"} for row in rows)
    assert report["subjects"] == {label: n for label, n in tiny_params.synth.subjects}


def test_name_rule_refuted_by_pixels_falls_back_without_splitting_subjects(tiny_archive, tiny_params, tmp_path):
    root = copy_archive(tiny_archive, tmp_path)
    folder = "OriginalDataset/NonDemented"
    names = sorted(path.name for path in (root / folder).iterdir())
    renamed = {f"{folder}/{old}": f"{folder}/{new}" for old, new in zip(names, np.random.default_rng(0).permutation(names))}
    for old in renamed:
        (root / old).rename(root / f"{old}.tmp")
    for old, new in renamed.items():
        (root / f"{old}.tmp").rename(root / new)
    truth = pd.read_csv(truth_file(root), dtype=str)
    truth[["path", "source"]] = truth[["path", "source"]].replace(renamed)
    truth.to_csv(truth_file(root), index=False)
    rows, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    assert report["subject_rules"]["NonDemented"]["rule"] == "pixels"
    assert "rejected" in report["subject_rules"]["NonDemented"]["note"]
    assert score_against_truth(rows, truth_file(root))["true_subjects_split"] == 0


def test_index_is_byte_identical_across_runs(tiny_archive, tiny_params, tmp_path):
    for name in ("first.csv", "second.csv"):
        write_index(tmp_path / name, build_index(tiny_archive, tiny_params.data.classes, tiny_params.dedupe)[0])
    assert (tmp_path / "first.csv").read_bytes() == (tmp_path / "second.csv").read_bytes()


def test_serial_and_parallel_scans_agree(tiny_archive, tiny_params):
    serial = tiny_params.dedupe.model_copy(update={"workers": 1})
    parallel = tiny_params.dedupe.model_copy(update={"workers": 2})
    classes = tiny_params.data.classes
    assert build_index(tiny_archive, classes, serial)[0] == build_index(tiny_archive, classes, parallel)[0]


@pytest.mark.parametrize("make", ["missing", "empty", "no-class-folder"])
def test_unusable_archive_stops_with_one_line(tmp_path, make):
    root = tmp_path / "archive"
    if make != "missing":
        root.mkdir()
    if make == "no-class-folder":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "scan.jpg")
    with pytest.raises(PipelineError) as error:
        build_index(root, ("NonDemented", "MildDemented"), parse_params(raw_params()).dedupe)
    message = str(error.value)
    assert str(root) in message and "OriginalDataset" in message and "\n" not in message


def test_cli_prints_one_error_line_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw_params(data={"archive": str(tmp_path / "nowhere")})))
    assert cli(["dedupe", "--params", str(params)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.archive") and "nowhere" in err[0]


def test_reference_shape_is_the_commonest_among_a_spread_sample_of_originals(tmp_path):
    paths = []
    for index in range(600):
        size = (30, 20) if index % 10 == 3 else (20, 30)  # (width, height): one original in ten is turned
        paths.append(tmp_path / f"scan{index:03d}.png")
        Image.new("L", size).save(paths[-1])
    paths.append(tmp_path / "broken.png")
    paths[-1].write_bytes(b"not an image")
    assert reference_shape(paths) == (30, 20)  # (rows, columns)
    assert reference_shape(paths[-1:]) == (1, 1) and reference_shape([]) == (1, 1)


def test_a_copy_is_weighed_against_every_subject_when_one_subjects_alike_slices_fill_its_candidates():
    """Subject x's 20 slices hold the copy's 4 nearest keys and score 0.95; its source, y's one slice, has a key far
    off. Nearest candidates alone give x with a margin of 0.95 (no other subject among them); per subject, y."""
    rng = np.random.default_rng(0)
    copy = np.abs(rng.normal(size=8)).astype(np.float32)
    copy /= np.linalg.norm(copy)
    off = np.abs(rng.normal(size=(20, 8))).astype(np.float32)
    off -= (off @ copy)[:, None] * copy  # orthogonal to the copy, then mixed in: similarity 0.95
    alike = 0.95 * copy + np.sqrt(1 - 0.95**2) * off / np.linalg.norm(off, axis=1, keepdims=True)
    views = np.concatenate([alike, copy[None]])[:, None, :]
    keys = np.concatenate([rng.normal(0, 0.01, (20, 4)), np.full((1, 4), 10.0)]).astype(np.float32)
    subjects = np.array(["x"] * 20 + ["y"])
    arguments = (np.zeros((1, 4), np.float32), [copy[None]], keys, views, subjects, 4)
    assert match_copies(*arguments).margin[0] == pytest.approx(0.95, abs=1e-3)
    matches = match_copies_per_subject(*arguments)
    assert matches.source[0] == 20 and matches.score[0] == pytest.approx(1.0, abs=1e-5)
    assert matches.margin[0] == pytest.approx(0.05, abs=1e-3)
