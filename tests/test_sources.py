"""Sources other than the MRI archive: class folders with a group CSV, and a TFDS dataset (mocked by TFDS itself)."""

import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow_datasets as tfds
import yaml
from PIL import Image

from pipeline.core.errors import PipelineError
from pipeline.core.params import parse_params
from pipeline.mri.dedupe import build_index
from pipeline.sources import folder as folder_source
from pipeline.sources.folder import PIXELS, index_folder
from pipeline.sources.tfds import index_tfds, open_builder
from pipeline.stages import dedupe as dedupe_stage
from pipeline.stages import split as split_stage
from pipeline.stages import synth as synth_stage
from pipeline.tables.split import assign_splits, own_splits, split_metrics
from tests.conftest import ROOT, commit, files_on_disk, init_project, raw_params, run

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}
FLOWERS = "oxford_flowers102"
MOCK_SPLITS = ("train", "validation", "test")
MOCK_EXAMPLES = 12  # per split, as the metadata declares and the mock yields
FLOWERS_RUN_EXAMPLES = 120  # per split in the end-to-end run: enough for some of the 102 classes to have two subjects


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def colour_image(seed: int, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def colour_folder(root: Path, classes=("cat", "dog", "fish"), per_class: int = 6) -> dict[str, str]:
    """Class folders of random colour PNGs, two images per group; returns {path: group}."""
    groups = {}
    for rank, name in enumerate(classes):
        for number in range(per_class):
            path = f"{name}/{number:02d}.png"
            save(root / path, colour_image(100 * rank + number))
            groups[path] = f"{name}-patient{number // 2}"
    return groups


def write_groups(path: Path, groups: dict[str, str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "group"])
        writer.writerows(groups.items())


def test_folder_source_accounts_for_every_file_and_keeps_groups_and_twins_together(tmp_path):
    root = tmp_path / "photos"
    groups = colour_folder(root)
    groups["dog/00.png"] = "cat-patient0"  # one group over two classes: kept whole, and reported
    groups["cat/99.png"] = "cat-patient9"  # listed, but no such file: reported
    save(root / "cat/unlisted.png", colour_image(7))  # a file the CSV does not name: set aside with the reason
    (root / "fish/notes.txt").write_text("not an image")
    save(root / "fish/twin.png", colour_image(200 + 1))  # fish/01.png's pixels in another group: groups merge
    groups["fish/twin.png"] = "fish-patient9"
    save(root / "dog/cat-copy.png", colour_image(0))  # cat/00.png's pixels under another class: a conflict
    groups["dog/cat-copy.png"] = "dog-patient9"
    write_groups(root / "groups.csv", groups)

    rows, report, info = index_folder(root, (), root / "groups.csv", 32, 1.1)

    by_path = {row.path: row for row in rows}
    assert set(by_path) == files_on_disk(root) - {"groups.csv"}  # every file found has its row
    assert info.classes == ("cat", "dog", "fish") and info.channels == 3 and not info.own_splits
    assert by_path["cat/unlisted.png"].status == "rejected" and "not listed in data.groups" in by_path[
        "cat/unlisted.png"].reason
    assert by_path["fish/notes.txt"].status == "rejected" and "not an image file" in by_path["fish/notes.txt"].reason
    assert {by_path["cat/00.png"].status, by_path["dog/cat-copy.png"].status} == {"conflict"}
    assert by_path["fish/twin.png"].subject == by_path["fish/01.png"].subject == "fish-patient0"
    assert by_path["dog/00.png"].subject == by_path["cat/01.png"].subject == "cat-patient0"
    assert report["groups"]["file"] == "groups.csv"  # the one file found that has no row
    assert report["groups"]["listed_but_missing"] == 1 and report["groups"]["missing_examples"] == ["cat/99.png"]
    assert report["groups"]["groups_in_two_or_more_classes"] == 1
    assert report["identical"]["identical_sets"] == 2 and report["identical"]["conflicts"] == 2

    index = pd.DataFrame([row.__dict__ for row in rows])
    split = assign_splits(index, info.classes, RATIOS, 42, copies_in_train=True)
    assert split_metrics(split, info.classes)["shared_subjects"] == 0
    assert split.rows.groupby("subject")["split"].nunique().max() == 1


def test_folder_without_a_group_file_splits_per_image_but_keeps_identical_images_together(tmp_path):
    root = tmp_path / "scans"
    for rank, name in enumerate(("benign", "malignant")):
        for number in range(10):
            save(root / f"{name}/{number}.png", np.full((32, 32), 10 * number + rank, np.uint8))
    save(root / "benign/again.png", np.full((32, 32), 0, np.uint8))  # benign/0.png's pixels
    rows, report, info = index_folder(root, ("malignant", "benign"), None, 32, 1.1)
    assert info.classes == ("malignant", "benign") and info.channels == 1
    subjects = {row.path: row.subject for row in rows}
    assert subjects["benign/again.png"] == subjects["benign/0.png"]
    assert len(set(subjects.values())) == 20 and report["identical"]["identical_images"] == 2


def test_a_group_file_without_its_columns_is_refused_with_the_fix(tmp_path):
    root = tmp_path / "photos"
    colour_folder(root)
    (root / "groups.csv").write_text("file,patient\ncat/00.png,p1\n")
    with pytest.raises(PipelineError, match=r"missing column\(s\) path, group"):
        index_folder(root, (), root / "groups.csv", 32, 1.1)


def test_a_group_file_outside_the_folder_is_refused_as_dvc_would_not_see_it_change(tmp_path):
    root = tmp_path / "photos"
    write_groups(tmp_path / "groups.csv", colour_folder(root))
    with pytest.raises(PipelineError, match=r"^data.groups \S+/groups.csv is outside data.archive \S+/photos: move it "
                                            r"into that folder, which dedupe depends on"):
        index_folder(root, (), tmp_path / "groups.csv", 32, 1.1)


def test_grouping_by_pixels_with_no_readable_image_sets_every_file_aside(tmp_path):
    for name in ("benign", "malignant"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scan.png").write_bytes(b"no png")
    rows, _, _ = index_folder(tmp_path, (), Path(PIXELS), 32, 1.1)
    assert [(row.path, row.status) for row in rows] == [("benign/scan.png", "rejected"), ("malignant/scan.png", "rejected")]
    assert all(row.reason.startswith("not a readable image") for row in rows)


def write_flowers_metadata(data_dir: Path, examples: int = MOCK_EXAMPLES) -> None:
    """The metadata of a prepared oxford_flowers102 (split names, `examples` in each) that mock_data's USE_FILES
    policy reads; the mock must yield as many, as the source reconciles the two."""
    from tensorflow_datasets.core import naming, splits
    builder = tfds.builder(FLOWERS, data_dir=str(data_dir))
    template = naming.ShardedFileTemplate(data_dir=builder.data_dir, dataset_name=builder.name,
                                          filetype_suffix="tfrecord", split="train")
    builder.info.set_splits(splits.SplitDict([
        splits.SplitInfo(name=name, shard_lengths=[examples], num_bytes=0, filename_template=template.replace(split=name))
        for name in MOCK_SPLITS]))
    Path(builder.data_dir).mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)


@pytest.fixture(scope="module")
def flowers_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("tfds")
    write_flowers_metadata(data_dir)
    return data_dir


def test_tfds_source_indexes_every_mocked_flower_with_its_own_split(flowers_dir, tmp_path):
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(flowers_dir)):
        rows, report, info = index_tfds(f"tfds:{FLOWERS}", str(flowers_dir), (), tmp_path / "images")
    assert len(info.classes) == 102 and info.classes[0] == "pink primrose" and info.channels == 3 and info.own_splits
    assert len(rows) == 36 and {row.source_split for row in rows} == {"train", "val", "test"}
    assert sorted(row.path for row in rows) == sorted(files_on_disk(tmp_path / "images"))
    rejected = [row for row in rows if row.status == "rejected"]
    assert all("too small" in row.reason for row in rejected)  # mock images have sides of 5 to 49 px
    # TFDS' mock yields the same examples in every split: each image has twins in the other two splits
    usable = [row for row in rows if row.status == "ok"]
    assert report["identical"]["identical_sets"] == len(usable) // 3
    assert len({row.subject for row in usable}) == len(usable) // 3
    index = pd.DataFrame([row.__dict__ for row in rows])
    kept = own_splits(index, info.classes, drop_shared_images=False)
    assert kept.shared_images["images"] == 2 * len(usable) // 3 and len(kept.rows) == len(usable)
    assert "leak" in kept.warnings[0]
    dropped = own_splits(index, info.classes, drop_shared_images=True)
    assert set(dropped.rows["split"]) == {"train"} and dropped.shared_images["dropped"]
    resplit = assign_splits(index.assign(source_split=""), info.classes, RATIOS, 42, copies_in_train=True)
    assert split_metrics(resplit, info.classes)["shared_subjects"] == 0


def test_an_unprepared_tfds_dataset_stops_with_how_to_prepare_it(tmp_path):
    with pytest.raises(PipelineError) as caught:
        open_builder(FLOWERS, str(tmp_path))
    message = str(caught.value)
    assert "not prepared in" in message and str(tmp_path) in message
    assert f"tfds build {FLOWERS}" in message and "data.tfds_dir" in message and "\n" not in message


def test_an_unknown_tfds_name_stops_with_one_line(tmp_path):
    with pytest.raises(PipelineError, match="TFDS knows no such dataset"):
        open_builder("no_such_dataset_here", str(tmp_path))


def test_the_folder_source_never_imports_tensorflow_datasets():
    code = ("import sys, pipeline.sources.factory, pipeline.stages.dedupe, pipeline.sources.folder; "
            "print('tensorflow_datasets' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


TINY = {"backbones": ["MobileNetV3Small"], "image_size": 32, "epochs": 1, "fine_tune_epochs": 1,
        "finetune": {"max_train_images": 32}, "augment": {"views": 0},
        "evaluate": {"bootstrap": 10, "latency_runs": 1}, "audit": {"repeats": 1, "backbone": "MobileNetV3Small"},
        "baselines": {"folds": 2, "backbone": "MobileNetV3Small"},
        "synth": {"subjects": {"NonDemented": 1, "VeryMildDemented": 1, "MildDemented": 1, "ModerateDemented": 1},
                  "slices": 2, "copies_per_class": 1, "duplicates": 0}}


def repro(project: Path, data: dict, env: dict | None = None, **sections) -> str:
    """`dvc repro` of the pipeline with tiny params and `data` in `project` (a new git + DVC repository there)."""
    init_project(project)
    raw = raw_params(**{**TINY, **sections}, data=data)
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    commit(project, "params")
    return run(["dvc", "repro"], project, env)


def check_outputs(project: Path, n_classes: int, channels: int) -> None:
    """Every output parses; metrics are recomputable from the saved predictions; the index accounts for all."""
    meta = json.loads((project / "data/tfrecords/meta.json").read_text())
    assert len(meta["classes"]) == n_classes and meta["channels"] == channels
    predictions = pd.read_csv(project / "plots/eval/MobileNetV3Small/predictions.csv", keep_default_na=False)
    report = json.loads((project / "metrics/eval/MobileNetV3Small.json").read_text())
    assert report["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    splits = pd.read_csv(project / "data/splits.csv", keep_default_na=False)
    assert len(predictions) == (splits["split"] == "test").sum()
    for name in ("summary.json", "audit.json", "baselines.json", "split.json", "dedupe.json"):
        json.loads((project / "metrics" / name).read_text())
    assert (project / "reports/comparison.md").read_text().startswith("#")


def tfds_mock_env(data_dir: Path, examples: int, *on_path: Path) -> dict[str, str]:
    """The variables under which `python -m pipeline dedupe` reads TFDS' mock of the Flowers in data_dir."""
    return {"PIPELINE_TFDS_MOCK": str(data_dir), "PIPELINE_TFDS_EXAMPLES": str(examples),
            "PYTHONPATH": os.pathsep.join([*map(str, (ROOT / "tests/tfds_mock", *on_path)),
                                           os.environ.get("PYTHONPATH", "")])}


def test_tfds_dedupe_prints_no_tensorflow_start_up_line(flowers_dir, tmp_path):
    """TFDS, and TensorFlow with it, is imported when the stage opens the dataset: after the stage's module."""
    data = {"source": f"tfds:{FLOWERS}", "tfds_dir": str(flowers_dir), "classes": [], "ordinal": False,
            "negative_class": ""}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params(data=data)))
    env = {key: value for key, value in os.environ.items() if key != "PIPELINE_TF_LOGS"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "dedupe"], check=False, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**env, **tfds_mock_env(flowers_dir, MOCK_EXAMPLES, ROOT)})
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "data/interim/index.csv")) == 3 * 12
    assert "INFO pipeline" in done.stderr
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def reproduced(module_tmp) -> dict[str, tuple[Path, str]]:
    """The two end-to-end runs, {name: (project, DVC's output)}, run at once: a colour folder with a group CSV, and
    the mocked Flowers. TFDS' mock repeats the same examples in train, validation and test: used as they come,
    those splits would leak (the unit test above counts it), so that run re-splits them, keeping twins together."""
    folder = module_tmp / "folder"
    groups = {}
    for rank, name in enumerate(("cat", "dog", "fish")):
        for number in range(12):
            path = f"{name}/{number:02d}.png"
            save(folder / "photos" / path, colour_image(100 * rank + number, size=48))
            groups[path] = f"{name}-patient{number // 2}"
    write_groups(folder / "photos/groups.csv", groups)
    flowers = module_tmp / "flowers"
    flowers_dir = module_tmp / "tfds"
    write_flowers_metadata(flowers_dir, examples=FLOWERS_RUN_EXAMPLES)
    mock = tfds_mock_env(flowers_dir, FLOWERS_RUN_EXAMPLES)
    runs = {
        "folder": (folder, {"source": "folder", "archive": "photos", "groups": "photos/groups.csv", "classes": [],
                            "ordinal": False, "negative_class": ""}, None, {}),
        "flowers": (flowers, {"source": f"tfds:{FLOWERS}", "tfds_dir": str(flowers_dir), "classes": [],
                              "ordinal": False, "negative_class": ""}, mock, {"split": {"source_splits": False}}),
    }
    with ThreadPoolExecutor(len(runs)) as pool:  # two cores: the stages' start-up and DVC's own work overlap
        outputs = {name: pool.submit(repro, project, data, env, **sections)
                   for name, (project, data, env, sections) in runs.items()}
        return {name: (runs[name][0], output.result()) for name, output in outputs.items()}


def test_dvc_repro_on_a_colour_folder_with_a_group_file(reproduced):
    project, output = reproduced["folder"]
    assert "Running stage 'finetune@MobileNetV3Small'" in output
    index = pd.read_csv(project / "data/interim/index.csv", keep_default_na=False)
    assert set(index["path"]) == files_on_disk(project / "photos") - {"groups.csv"}
    splits = pd.read_csv(project / "data/splits.csv", keep_default_na=False)
    assert splits.groupby("subject")["split"].nunique().max() == 1 and set(splits["split"]) == {"train", "val", "test"}
    check_outputs(project, n_classes=3, channels=3)


def test_dvc_repro_on_mocked_oxford_flowers(reproduced):
    project, output = reproduced["flowers"]
    assert "oneDNN" not in output and "absl::InitializeLog" not in output  # no stage prints TensorFlow's start-up
    index = pd.read_csv(project / "data/interim/index.csv", keep_default_na=False)
    assert len(index) == 3 * FLOWERS_RUN_EXAMPLES
    assert set(index["path"]) == files_on_disk(project / "data/interim/images")
    assert set(index["source_split"]) == {"train", "val", "test"}
    splits = pd.read_csv(project / "data/splits.csv", keep_default_na=False)
    assert splits.groupby("subject")["split"].nunique().max() == 1  # twins from the three TFDS splits together
    check_outputs(project, n_classes=102, channels=3)


def test_a_colour_image_in_the_gray_archive_is_set_aside_with_the_reason(tiny_archive, tiny_params, tmp_path):
    archive = Path(shutil.copytree(tiny_archive, tmp_path / "demo"))
    save(archive / "OriginalDataset/NonDemented/photo.png", colour_image(3, size=64))
    gray_as_rgb = np.repeat(np.full((64, 64, 1), 90, np.uint8), 3, axis=2)  # gray pixels stored as RGB, like Kaggle's
    save(archive / "OriginalDataset/NonDemented/rgb-gray.png", gray_as_rgb)
    rows, _ = build_index(archive, tiny_params.data.classes, tiny_params.dedupe)
    by_path = {row.path: row for row in rows}
    photo = by_path["OriginalDataset/NonDemented/photo.png"]
    assert photo.status == "rejected" and "colour pixels in a grayscale source" in photo.reason
    assert "colour" not in by_path["OriginalDataset/NonDemented/rgb-gray.png"].reason


@pytest.mark.parametrize("source", ["folder", f"tfds:{FLOWERS}"])
def test_params_of_another_source_do_not_check_the_demo_generator(source):
    params = parse_params(raw_params(data={"source": source, "classes": ["daisy", "rose", "tulip"],
                                           "ordinal": False, "negative_class": ""}))
    assert not params.data.reads_demo and dict(params.synth.subjects)["NonDemented"] == 20


def test_a_folder_with_its_own_class_order_runs_through_split_and_synth_writes_no_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    colour_folder(tmp_path / "flowers", classes=("daisy", "rose", "tulip"), per_class=10)
    params = parse_params(raw_params(data={"source": "folder", "archive": "flowers", "classes": ["tulip", "daisy", "rose"],
                                           "ordinal": False, "negative_class": ""}))
    synth_stage.main(params)
    assert files_on_disk(tmp_path / "data/raw/demo") == {"README.txt"}
    assert (tmp_path / "data/raw/demo-truth.csv").read_text() == "path,kind,label,source,subject\n"
    dedupe_stage.main(params)
    split_stage.main(params)
    assert json.loads((tmp_path / "data/interim/source.json").read_text())["classes"] == ["tulip", "daisy", "rose"]
    splits = pd.read_csv(tmp_path / "data/splits.csv", keep_default_na=False)
    assert len(splits) == 30 and set(splits["split"]) == {"train", "val", "test"}


def test_the_folder_source_counts_its_files_like_the_archive_and_reconciles_them_with_a_walk(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    groups = colour_folder(root)
    del groups["fish/05.png"]  # not listed: set aside
    write_groups(root / "groups.csv", groups)
    (root / "fish/notes.txt").write_text("not an image")
    _, report, _ = index_folder(root, (), root / "groups.csv", 32, 1.1)
    assert report["files"] == {"found": 19, "used": 17, "set_aside": 2}  # groups.csv is not counted: it has no row
    assert report["status"] == {"ok": {"original": 17}, "rejected": {"original": 2}}
    assert report["subjects"] == {"cat": 3, "dog": 3, "fish": 3}
    read_pixels = folder_source.read_pixels

    def a_file_arrives_meanwhile(folder, paths):
        save(folder / "dog/late.png", colour_image(99))
        return read_pixels(folder, paths)

    monkeypatch.setattr(folder_source, "read_pixels", a_file_arrives_meanwhile)
    with pytest.raises(PipelineError, match=r"^20 entries on disk in data.archive \S+photos besides groups.csv but 19 "
                                            r"rows indexed; did the files change while the stage ran\?"):
        index_folder(root, (), root / "groups.csv", 32, 1.1)


def test_the_tfds_source_counts_its_examples_like_the_archive_and_reconciles_them_with_the_declared_sizes(
        flowers_dir, tmp_path):
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(flowers_dir)):
        rows, report, _ = index_tfds(f"tfds:{FLOWERS}", str(flowers_dir), (), tmp_path / "images")
    used = sum(row.status == "ok" for row in rows)
    assert report["files"] == {"found": 36, "used": used, "set_aside": 36 - used} and 0 < used < 36
    assert report["status"] == {"ok": {"original": used}, "rejected": {"original": 36 - used}}
    assert sum(report["subjects"].values()) == len({row.subject for row in rows if row.status == "ok"})
    fewer = tfds.testing.mock_data(num_examples=11, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(flowers_dir))
    with fewer, pytest.raises(PipelineError, match=rf"^36 examples in the splits of tfds:{FLOWERS} but 33 rows indexed"):
        index_tfds(f"tfds:{FLOWERS}", str(flowers_dir), (), tmp_path / "again")
