"""The demo archive: Kaggle's formats and names, truth beside it, deterministic for a seed."""

import hashlib
import re
import sys

import pandas as pd
import pytest
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
from PIL import Image

from pipeline.core.paths import truth_file
from pipeline.mri.layout import UUID_NAME
from pipeline.mri.subjects import fits_a_name_rule
from pipeline.mri.synth import write_archive
from tests.conftest import ROOT, files_on_disk, run, write_params


def test_originals_and_copies_look_like_kaggle(tiny_archive, tiny_params):
    truth = pd.read_csv(truth_file(tiny_archive))
    for row in truth.itertuples():
        with Image.open(tiny_archive / row.path) as image:
            if row.kind == "original":
                assert (image.format, image.mode, image.size) == ("JPEG", "L", (176, 208))
                assert re.fullmatch(r"(nonDem|verymildDem|mildDem|moderateDem)\d+\.jpg", row.path.split("/")[-1])
                assert row.path.startswith("OriginalDataset/")
            else:
                assert (image.format, image.mode) == ("JPEG", "RGB") and image.size in {(180, 180), (200, 190)}
                assert UUID_NAME.match(row.path.split("/")[-1].removesuffix(".jpg"))
                assert row.path.startswith("AugmentedAlzheimerDataset/")


def test_truth_sits_beside_the_archive_and_covers_every_file(tiny_archive):
    truth = pd.read_csv(truth_file(tiny_archive))
    assert sorted(truth["path"]) == sorted(files_on_disk(tiny_archive))
    assert truth_file(tiny_archive).parent == tiny_archive.parent


def test_slice_major_names_encode_the_subject(tiny_archive, tiny_params):
    truth = pd.read_csv(truth_file(tiny_archive))
    originals = truth[truth["kind"] == "original"]
    for label, n_subjects in tiny_params.synth.subjects:
        rows = originals[originals["label"] == label]
        numbers = rows["path"].str.extract(r"(\d+)\.jpg$")[0].astype(int)
        subjects = rows["subject"].str.extract(r"(\d+)$")[0].astype(int)
        assert (numbers % n_subjects == subjects).all()
        assert len(rows) == n_subjects * tiny_params.synth.slices


def test_duplicates_are_byte_identical_copies(tiny_archive, tiny_params):
    truth = pd.read_csv(truth_file(tiny_archive))
    digests = [hashlib.sha1((tiny_archive / path).read_bytes()).hexdigest() for path in truth["path"]]
    assert len(digests) - len(set(digests)) == tiny_params.synth.duplicates


def test_deterministic_for_a_seed_and_layout_v2(tmp_path, tiny_params):
    synth = tiny_params.synth.model_copy(update={"subjects": (("NonDemented", 1), ("MildDemented", 1)), "slices": 2,
                                                 "copies_per_class": 3, "duplicates": 1})
    classes = ("NonDemented", "MildDemented")
    first = write_archive(tmp_path / "a", classes, synth)
    again = write_archive(tmp_path / "b", classes, synth)
    assert first == again
    for row in first:
        assert (tmp_path / "a" / row.path).read_bytes() == (tmp_path / "b" / row.path).read_bytes()
    other = write_archive(tmp_path / "c", classes, synth.model_copy(update={"seed": synth.seed + 1}))
    assert [row.path for row in other] != [row.path for row in first]
    v2 = write_archive(tmp_path / "d", classes, synth.model_copy(update={"layout": "v2"}))
    assert {row.path.split("/")[1] for row in v2} == {"val", "train"}
    assert all(row.path.startswith("data/val/") == (row.kind == "original") for row in v2)


def test_same_bytes_whichever_vector_units_numpy_picks(tmp_path, tiny_archive, monkeypatch):
    """numpy picks AVX2 or AVX-512 loops by CPU; a laptop and CI must still write the same archive."""
    units = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]  # numpy's own list, as numpy is pinned
    if not units:
        pytest.skip("numpy runs only its baseline loops on this CPU: no vector unit to switch off")
    write_params(tmp_path)
    script = (
        "from pathlib import Path; from pipeline.core.params import load_params; from pipeline.mri.synth import write_archive; "
        "params = load_params(Path('params.yaml')); write_archive(Path('demo'), params.data.classes, params.synth)"
    )
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", " ".join(units))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    run([sys.executable, "-c", script], tmp_path)
    again = tmp_path / "demo"
    expected = sorted(files_on_disk(tiny_archive))
    assert sorted(files_on_disk(again)) == expected
    changed = [path for path in expected if (again / path).read_bytes() != (tiny_archive / path).read_bytes()]
    assert not changed, f"{len(changed)} files differ without {units}, e.g. {changed[0]}"


def test_opaque_names_carry_no_subject_and_change_no_pixel(tmp_path, tiny_params):
    synth = tiny_params.synth.model_copy(update={"subjects": (("NonDemented", 2), ("MildDemented", 2)), "slices": 2,
                                                 "copies_per_class": 2, "duplicates": 1})
    classes = ("NonDemented", "MildDemented")
    named = write_archive(tmp_path / "named", classes, synth)
    opaque_synth = synth.model_copy(update={"opaque_names": True})
    opaque = write_archive(tmp_path / "opaque", classes, opaque_synth)
    assert opaque == write_archive(tmp_path / "again", classes, opaque_synth)

    def contents(root, truth, kind):
        """Per subject, the sorted digests of its files of one kind."""
        files = {}
        for row in truth:
            if row.kind == kind:
                files.setdefault(row.subject, []).append(hashlib.sha1((root / row.path).read_bytes()).hexdigest())
        return {subject: sorted(digests) for subject, digests in files.items()}

    for kind in ("original", "copy"):
        assert contents(tmp_path / "opaque", opaque, kind) == contents(tmp_path / "named", named, kind)
    for row in opaque:
        if row.kind == "original":
            stem = row.path.split("/")[-1].removesuffix(".jpg")
            assert re.fullmatch(r"[0-9a-f]{32}", stem) and not fits_a_name_rule(stem), row.path
            assert (tmp_path / "opaque" / row.path).read_bytes() == (tmp_path / "again" / row.path).read_bytes()
