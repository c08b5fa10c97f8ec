"""A careful user's messy disk: every file found gets one row with a reason, nothing hangs or crashes."""

import contextlib
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.imaging.reader import read_image
from pipeline.mri import dedupe
from pipeline.mri.dedupe import build_index
from pipeline.stages import split as split_stage
from pipeline.tables.index import read_index, write_index
from pipeline.tables.source import SourceInfo, write_source_info
from pipeline.tables.split import read_splits
from tests.test_dedupe import copy_archive
from tests.test_reader import encoded, mutants

MILD = "OriginalDataset/MildDemented"
COPIES = "AugmentedAlzheimerDataset/MildDemented"
ODD_NAMES = (os.fsdecode(b"scan\xff\xfe.jpg"), "scan\rreturn.jpg", "back\\slash\nline.jpg")


def index_of(root: Path, params) -> tuple[dict, dict]:
    rows, report = build_index(root, params.data.classes, params.dedupe)
    return {row.path: row for row in rows}, report


def first_original(root: Path, folder: str = MILD) -> Path:
    """The first original of the tiny archive's MildDemented folder."""
    return root / folder / "mildDem0.jpg"


@pytest.fixture(scope="module")
def messy(tiny_archive, tiny_params, tmp_path_factory):
    """The tiny archive with odd names, misnamed files, cross-format copies, a symlinked class folder and a loop."""
    root = copy_archive(tiny_archive, tmp_path_factory.mktemp("messy"))
    mild = root / MILD
    (mild / "notes.jpg").write_bytes(b"P5 scanner notes\n")
    (mild / "header.jpg").write_bytes(b"P5\n64 64\n255\n")
    tiff = bytearray(encoded("TIFF"))
    tiff[72] = 5  # a tag turned RATIONAL: Pillow raises TypeError ('IFDRational' object ...)
    (mild / "corrupt.tif").write_bytes(bytes(tiff))
    original = first_original(root)
    copies = sorted((root / COPIES).iterdir())
    for name, copy in zip(ODD_NAMES, copies):
        copy.rename(root / COPIES / name)
    shutil.copy(original, mild / f"{original.stem} (1).jpg")  # a re-download beside the original
    non = sorted((root / "OriginalDataset/NonDemented").iterdir())[0]
    Image.fromarray(read_image(non)).save(mild / "same-as-non.png")  # same pixels, other container, other label
    Image.fromarray(read_image(original)).save(mild / "same-as-mild.png")
    moved = root.parent / "elsewhere" / "ModerateDemented"
    shutil.move(root / "OriginalDataset/ModerateDemented", moved)
    (root / "OriginalDataset/ModerateDemented").symlink_to(moved, target_is_directory=True)
    (mild / "loop").symlink_to(root, target_is_directory=True)
    rows, report = index_of(root, tiny_params)
    return root, rows, report, {"original": original, "non": non}


def test_misnamed_and_corrupt_files_are_rejected_with_reasons(messy):
    _, rows, _, _ = messy
    for name in ("notes.jpg", "header.jpg", "corrupt.tif"):
        row = rows[f"{MILD}/{name}"]
        assert row.status == "rejected" and ("corrupt" in row.reason or "truncated" in row.reason), row


def test_symlinked_class_folder_is_followed(messy, tiny_params):
    _, rows, report, _ = messy
    moderate = [row for path, row in rows.items() if path.startswith("OriginalDataset/ModerateDemented/")]
    assert len(moderate) == tiny_params.synth.slices * dict(tiny_params.synth.subjects)["ModerateDemented"]
    assert {row.status for row in moderate} == {"ok"}
    assert report["subjects"]["ModerateDemented"] == dict(tiny_params.synth.subjects)["ModerateDemented"]


def test_symlink_loop_is_one_rejected_row(messy):
    _, rows, _, _ = messy
    row = rows[f"{MILD}/loop"]
    assert row.status == "rejected" and "link to folder" in row.reason
    assert not any(path.startswith(f"{MILD}/loop/") for path in rows)


def test_found_is_counted_from_disk(messy):
    _, rows, report, _ = messy
    assert report["files"]["found"] == len(rows)


def test_same_pixels_in_another_container_under_another_label_is_a_conflict(messy):
    root, rows, _, planted = messy
    for path in (planted["non"].relative_to(root).as_posix(), f"{MILD}/same-as-non.png"):
        assert rows[path].status == "conflict", rows[path]


def test_same_pixels_in_another_container_under_one_label_is_a_duplicate(messy):
    root, rows, _, planted = messy
    original = planted["original"].relative_to(root).as_posix()
    assert rows[f"{MILD}/same-as-mild.png"].status == "duplicate"
    assert rows[f"{MILD}/same-as-mild.png"].source == original


def test_stray_re_download_gives_way_to_the_original_and_keeps_the_name_rule(messy):
    root, rows, report, planted = messy
    original = planted["original"].relative_to(root).as_posix()
    assert rows[original].status == "ok"
    assert rows[f"{MILD}/{planted['original'].stem} (1).jpg"].status == "duplicate"
    assert report["subject_rules"]["MildDemented"]["rule"] == "slice-major"


def test_odd_file_names_round_trip_through_index_and_splits(messy, tiny_params, tmp_path, monkeypatch):
    root, rows, _, _ = messy
    monkeypatch.chdir(tmp_path)
    write_index(paths.INDEX, [rows[path] for path in sorted(rows)])
    text = paths.INDEX.read_bytes().decode("utf-8")
    assert "\r" not in text and len(pd.read_csv(paths.INDEX, dtype=str)) == len(rows)
    assert set(read_index(paths.INDEX)["path"]) == set(rows)
    params = tiny_params.model_copy(update={"data": tiny_params.data.model_copy(update={"archive": str(root)})})
    write_source_info(paths.SOURCE_INFO, SourceInfo("archive", str(root), params.data.classes, 1, False))
    split_stage.main(params)
    paths.SPLITS.read_bytes().decode("utf-8")
    assert len(pd.read_csv(paths.SPLITS, dtype=str)) == len(read_splits(paths.SPLITS, params.data.classes))
    odd = {f"{COPIES}/{name}" for name in ODD_NAMES}
    assert all(rows[path].status == "ok" for path in odd), [rows[path] for path in odd]
    in_splits = {row.path for row in read_splits(paths.SPLITS, params.data.classes)}
    assert odd & in_splits
    assert all((root / path).is_file() for path in in_splits)


def bind_socket(path: Path) -> None:
    """A Unix socket at `path`, bound by its short name (socket paths are limited to about 100 bytes)."""
    with contextlib.chdir(path.parent):
        socket.socket(socket.AF_UNIX).bind(path.name)


@pytest.mark.parametrize("make, word", [
    (os.mkfifo, "named pipe"),
    (lambda path: bind_socket(path), "socket"),
])
def test_special_files_get_a_rejected_row_and_are_never_opened(tiny_archive, tiny_params, tmp_path, make, word):
    root = copy_archive(tiny_archive, tmp_path)
    make(root / MILD / "special.jpg")
    make(root / MILD / "special.txt")
    rows, _ = index_of(root, tiny_params)
    for name in ("special.jpg", "special.txt"):
        assert rows[f"{MILD}/{name}"].status == "rejected" and word in rows[f"{MILD}/{name}"].reason


def test_unlistable_folder_gets_a_rejected_row(tiny_archive, tiny_params, tmp_path, monkeypatch):
    root = copy_archive(tiny_archive, tmp_path)
    locked = root / MILD / "locked"
    locked.mkdir()
    shutil.copy(first_original(root), locked / "hidden.jpg")
    scandir = os.scandir

    def refusing(path="."):
        if Path(path) == locked:  # what a folder without read permission does (root lists it anyway)
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    rows, report = index_of(root, tiny_params)
    assert rows[f"{MILD}/locked"].status == "rejected" and "permission denied" in rows[f"{MILD}/locked"].reason
    assert report["files"]["found"] == len(rows)


def test_stage_fails_when_rows_and_disk_disagree(tiny_archive, tiny_params, monkeypatch):
    find_files = dedupe.find_files
    monkeypatch.setattr(dedupe, "find_files", lambda *args: (find_files(*args)[0][1:], []))
    with pytest.raises(PipelineError, match="entries on disk"):
        build_index(tiny_archive, tiny_params.data.classes, tiny_params.dedupe)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow reads a mutated EXIF's pixels, and warns
def test_mutated_files_each_get_a_row_with_a_reason(tiny_archive, tiny_params, tmp_path):
    root = copy_archive(tiny_archive, tmp_path)
    rng = np.random.default_rng(5)
    names = []
    for format_name in ("JPEG", "PNG", "TIFF", "GIF", "PPM"):
        data = encoded(format_name)
        for number, mutant in zip(range(16), mutants(data, rng)):
            names.append(f"fuzz-{format_name}-{number}.jpg")
            (root / MILD / names[-1]).write_bytes(mutant)
    rows, _ = index_of(root, tiny_params)
    for name in names:
        row = rows[f"{MILD}/{name}"]
        assert row.status != "rejected" or row.reason, row
