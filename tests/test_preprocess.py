"""The preprocess stage and the TFRecord reader: exact round trips, reproducible shards, clear errors."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.core.errors import PipelineError
from pipeline.core.params import SPLITS, load_params
from pipeline.imaging.reader import load_image
from pipeline.imaging.tfrecords import META_NAME, make_dataset, read_meta, write_tfrecords
from pipeline.stages.preprocess import main
from pipeline.tables.source import SourceInfo, write_source_info
from pipeline.tables.split import SplitRow as Row
from pipeline.tables.split import read_splits
from tests.conftest import raw_params

CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
SIZE = 32
SPLIT_OF = ("train", "train", "train", "val", "test")  # by row number, cycling


@pytest.fixture
def archive(tmp_path) -> tuple[Path, list[Row]]:
    """Ten smooth scans of varied sizes and modes, and splits rows for them."""
    root = tmp_path / "archive"
    rows = []
    for number in range(10):
        label = CLASSES[number % len(CLASSES)]
        path = f"{label}/scan{number}.{'png' if number % 2 else 'jpg'}"
        y, x = np.mgrid[0:48 + number, 40:80]
        pixels = (127 + 100 * np.sin(x / (5 + number)) * np.cos(y / 7)).astype(np.uint8)
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).convert("RGB" if number % 3 == 0 else "L").save(root / path)
        rows.append(Row(path, label, SPLIT_OF[number % len(SPLIT_OF)], f"s{number // 2}", path, "original"))
    return root, rows


def write(archive, out_dir: Path, encoding: str = "png", shard_size: int = 2) -> dict:
    root, rows = archive
    return write_tfrecords(rows, root, out_dir, CLASSES, 1, SIZE, encoding, shard_size)


def read_all(out_dir: Path, split: str, **options) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every batch of a split, concatenated: images, labels, id strings."""
    batches = list(make_dataset(out_dir, split, 3, with_ids=True, **options).as_numpy_iterator())
    images = np.concatenate([images for images, _, _ in batches])
    labels = np.concatenate([labels for _, labels, _ in batches])
    ids = {name: [value.decode() for _, _, batch in batches for value in batch[name]] for name in batches[0][2]}
    return images, labels, ids


@pytest.mark.parametrize("encoding", ["png", "raw", "jpeg"])
def test_round_trip_gives_back_pixels_labels_and_ids_in_order(archive, tmp_path, encoding):
    root, rows = archive
    write(archive, tmp_path / "out", encoding)
    for split in SPLITS:
        expected = [row for row in rows if row.split == split]
        images, labels, ids = read_all(tmp_path / "out", split, channels=None)
        pixels = np.stack([load_image(root / row.path, SIZE) for row in expected])[..., None].astype(np.float32)
        assert images.dtype == np.float32 and images.shape == (len(expected), SIZE, SIZE, 1)
        if encoding == "jpeg":
            assert np.abs(images - pixels).mean() < 2.0
        else:
            np.testing.assert_array_equal(images, pixels)
        assert labels.tolist() == [CLASSES.index(row.label) for row in expected]
        for name in ("path", "subject", "source", "kind"):
            assert ids[name] == [getattr(row, name) for row in expected]


def test_three_channels_tile_the_gray_image(archive, tmp_path):
    write(archive, tmp_path / "out")
    images, labels = next(iter(make_dataset(tmp_path / "out", "train", 4, channels=3)))
    assert images.shape == (4, SIZE, SIZE, 3) and labels.dtype.name == "int32"
    images = images.numpy()
    assert np.all(images == images[..., :1]) and 0 <= images.min() <= images.max() <= 255


def test_load_image_stretches_with_antialiasing(tmp_path):
    stripes = np.zeros((64, 48), np.uint8)
    stripes[:, ::2] = 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    pixels = load_image(tmp_path / "stripes.png", SIZE)
    assert pixels.shape == (SIZE, SIZE) and pixels.dtype == np.uint8
    assert np.abs(pixels[2:-2, 2:-2].astype(int) - 128).max() < 20


def test_shuffle_is_seeded_and_keeps_every_image(archive, tmp_path):
    write(archive, tmp_path / "out")
    in_order = read_all(tmp_path / "out", "train")[2]["path"]
    first, again, other = (read_all(tmp_path / "out", "train", shuffle=True, seed=seed)[2]["path"]
                           for seed in (1, 1, 2))
    assert first == again and sorted(first) == sorted(in_order)
    assert first != in_order or other != in_order


def test_meta_counts_and_shards_match_the_rows(archive, tmp_path):
    _, rows = archive
    meta = write(archive, tmp_path / "out", shard_size=2)
    assert read_meta(tmp_path / "out") == meta
    assert meta.counts == {"train": 6, "val": 2, "test": 2}
    assert meta.class_counts["train"] == {name: sum(r.split == "train" and r.label == name for r in rows)
                                          for name in CLASSES}
    assert meta.shards["train"] == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert (meta.image_size, meta.channels, meta.encoding) == (SIZE, 1, "png")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(
        [META_NAME, *(name for names in meta.shards.values() for name in names)])


def test_writing_twice_gives_identical_files_and_drops_stale_shards(archive, tmp_path):
    out = tmp_path / "out"
    write(archive, out, shard_size=1)
    first = {path.name: path.read_bytes() for path in out.iterdir()}
    write(archive, out, shard_size=3)
    write(archive, out, shard_size=1)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == first


def test_an_image_the_reader_rejects_is_a_pipeline_error(archive, tmp_path):
    root, rows = archive
    (root / rows[4].path).write_bytes(b"")
    with pytest.raises(PipelineError, match=f"{rows[4].path}: empty file"):
        write(archive, tmp_path / "out")
    Image.new("L", (8, 8)).save(root / rows[4].path, format="PNG")
    with pytest.raises(PipelineError, match="too small"):
        write(archive, tmp_path / "out")


def test_reader_says_what_is_missing(archive, tmp_path):
    with pytest.raises(PipelineError, match="meta.json not found"):
        make_dataset(tmp_path / "out", "train", 2)
    meta = write(archive, tmp_path / "out")
    (tmp_path / "out" / meta.shards["val"][0]).unlink()
    with pytest.raises(PipelineError, match="missing"):
        make_dataset(tmp_path / "out", "val", 2)
    with pytest.raises(PipelineError, match="no split 'holdout'"):
        make_dataset(tmp_path / "out", "holdout", 2)


def test_read_splits_rejects_unknown_labels(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text("path,label,kind,source,subject,split\na.jpg,Healthy,original,a.jpg,s1,train\n")
    with pytest.raises(PipelineError, match="line 2: label 'Healthy'"):
        read_splits(path, CLASSES)


def test_main_writes_the_split_shards_of_an_archive(tiny_archive, tmp_path, monkeypatch):
    with (tiny_archive.parent / "demo-truth.csv").open(newline="") as handle:
        truth = sorted(csv.DictReader(handle), key=lambda record: record["path"])
    subjects = sorted({record["subject"] for record in truth})
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    with open("data/splits.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "kind", "source", "subject", "score", "status", "reason", "split"])
        for record in truth:
            split = SPLIT_OF[subjects.index(record["subject"]) % len(SPLIT_OF)]
            writer.writerow([record[name] for name in ("path", "label", "kind", "source", "subject")]
                            + ["", "ok", "", split])
    params = raw_params(data={"archive": str(tiny_archive)}, image_size=SIZE, preprocess={"shard_size": 64})
    Path("params.yaml").write_text(yaml.safe_dump(params))
    write_source_info(Path("data/interim/source.json"), SourceInfo("archive", str(tiny_archive), CLASSES, 1, False))

    main(load_params(Path("params.yaml")))

    meta = json.loads(Path("data/tfrecords/meta.json").read_text())
    with open("data/splits.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for split in SPLITS:
        expected = [row for row in rows if row["split"] == split]
        assert meta["counts"][split] == len(expected) > 0
        assert sum(meta["class_counts"][split].values()) == len(expected)
        assert len(meta["shards"][split]) == -(-len(expected) // 64)
    images, labels, ids = read_all(Path("data/tfrecords"), "val")
    assert images.shape[1:] == (SIZE, SIZE, 3)
    assert ids["path"] == [row["path"] for row in rows if row["split"] == "val"]


def test_a_meta_json_of_another_version_names_the_stage_to_rerun(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"classes": ["a"], "image_size": 32}))  # no counts, shards, ...
    with pytest.raises(PipelineError, match=r"meta.json is not what this version writes .*; run `dvc repro preprocess`$"):
        read_meta(tmp_path)
