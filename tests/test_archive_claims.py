"""README claims about reading an archive: file counts reconciled with the disk, the `<slice> (<subject>).jpg`
name rule, loose class-folder names, and scans with no brain visible set aside with their reason."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.core.paths import truth_file
from pipeline.mri.dedupe import build_index
from pipeline.mri.fingerprint import TOO_SMALL, UNIFORM
from pipeline.mri.truth import score_against_truth
from tests.bad_files import plant_bad_files
from tests.conftest import files_on_disk

ORIGINALS, COPIES = "OriginalDataset", "AugmentedAlzheimerDataset"


def copy_of(archive: Path, tmp_path: Path) -> Path:
    """A copy of the archive and its truth file under tmp_path."""
    target = tmp_path / archive.name
    shutil.copytree(archive, target)
    shutil.copy(truth_file(archive), truth_file(target))
    return target


def rename(root: Path, renamed: dict[str, str]) -> None:
    """Move files and folders (paths relative to root), and follow the moves in the truth file."""
    for old, new in renamed.items():
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        (root / old).rename(root / new)
    truth = pd.read_csv(truth_file(root), dtype=str)
    for column in ("path", "source"):
        for old, new in renamed.items():
            truth[column] = truth[column].str.replace(f"^{old}(?=/|$)", new, regex=True)
    truth.to_csv(truth_file(root), index=False)


def test_file_counts_reconcile_with_the_files_on_disk(tiny_archive, tiny_params, tmp_path):
    """found, used and set aside against counts made from the disk and the synth params, not from the rows."""
    on_disk = files_on_disk(tiny_archive)  # the truth file lies beside the archive
    scans = [path for path in on_disk if path.startswith((f"{ORIGINALS}/", f"{COPIES}/"))]
    _, report = build_index(tiny_archive, tiny_params.data.classes, tiny_params.dedupe)
    duplicates = tiny_params.synth.duplicates
    assert report["files"] == {"found": len(on_disk), "used": len(scans) - duplicates, "set_aside": duplicates}
    root = copy_of(tiny_archive, tmp_path)
    planted = plant_bad_files(root / ORIGINALS / "MildDemented")
    (root / "README.txt").write_text("archive notes\n")
    _, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    added = len(planted) + 1
    assert len(files_on_disk(root)) == len(on_disk) + added
    assert report["files"] == {"found": len(on_disk) + added, "used": len(scans) - duplicates,
                               "set_aside": duplicates + added}


def test_slice_of_subject_names_group_the_subjects(tiny_archive, tiny_params, tmp_path):
    """Originals renamed `<slice> (<subject>).jpg` (Kaggle's other naming) are grouped by that rule."""
    root = copy_of(tiny_archive, tmp_path)
    folder = f"{ORIGINALS}/NonDemented"
    n_subjects = dict(tiny_params.synth.subjects)["NonDemented"]
    renamed = {}
    for path in sorted((root / folder).iterdir()):  # synth writes nonDem<slice * n_subjects + subject>.jpg
        number = int(path.stem.removeprefix("nonDem"))
        renamed[f"{folder}/{path.name}"] = f"{folder}/{number // n_subjects} ({number % n_subjects + 10}).jpg"
    rename(root, renamed)
    rows, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    assert report["subject_rules"]["NonDemented"]["rule"] == "slice (subject)", report["subject_rules"]
    assert report["subjects"]["NonDemented"] == n_subjects
    by_name = {}
    for row in rows:
        if row.path.startswith(folder) and row.status == "ok":
            by_name.setdefault(Path(row.path).stem.split("(")[1].rstrip(")"), set()).add(row.subject)
    assert sorted(len(found) for found in by_name.values()) == [1] * n_subjects  # one subject per name
    assert len(set().union(*by_name.values())) == n_subjects
    assert score_against_truth(rows, truth_file(root))["true_subjects_split"] == 0


def test_loose_class_folder_names_are_matched(tiny_archive, tiny_params, tmp_path):
    """`Mild_Demented`, `very mild demented`, `NONDEMENTED`: case, spaces, `_` and `-` do not matter."""
    root = copy_of(tiny_archive, tmp_path)
    loose = {"MildDemented": "Mild_Demented", "VeryMildDemented": "very mild demented",
             "NonDemented": "NONDEMENTED", "ModerateDemented": "Moderate-Demented"}
    rename(root, {f"{top}/{name}": f"{top}/{other}" for top in (ORIGINALS, COPIES) for name, other in loose.items()})
    rows, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    assert report["subjects"] == dict(tiny_params.synth.subjects)
    assert report["files"]["used"] == report["files"]["found"] - tiny_params.synth.duplicates
    folders = {name: label for label, name in loose.items()}
    assert all(row.label == folders[Path(row.path).parts[1]] for row in rows)


def test_scans_with_no_brain_visible_are_rejected_with_the_reason(tiny_archive, tiny_params, tmp_path):
    root = copy_of(tiny_archive, tmp_path)
    folder = root / ORIGINALS / "MildDemented"
    Image.fromarray(np.full((208, 176), 90, np.uint8)).save(folder / "uniform.png")
    speck = np.zeros((208, 176), np.uint8)
    speck[100:112, 80:100] = 255  # bright, but a few pixels of the reduced frame
    Image.fromarray(speck).save(folder / "speck.png")
    rows, report = build_index(root, tiny_params.data.classes, tiny_params.dedupe)
    by_path = {row.path: row for row in rows}
    assert (by_path[f"{ORIGINALS}/MildDemented/uniform.png"].status,
            by_path[f"{ORIGINALS}/MildDemented/uniform.png"].reason) == ("rejected", UNIFORM)
    assert (by_path[f"{ORIGINALS}/MildDemented/speck.png"].status,
            by_path[f"{ORIGINALS}/MildDemented/speck.png"].reason) == ("rejected", TOO_SMALL)
    assert report["status"]["rejected"] == {"original": 2}
    assert report["subjects"] == dict(tiny_params.synth.subjects)
