"""The split stage: whole subjects per split, stratified by class, copies in train only."""

import dataclasses
import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params, parse_params
from pipeline.core.paths import truth_file
from pipeline.mri.dedupe import build_index
from pipeline.stages.split import main
from pipeline.tables.index import INDEX_COLUMNS, ROW_COLUMNS, write_index
from pipeline.tables.source import SourceInfo, write_source_info
from pipeline.tables.split import (
    SplitRow,
    assign_folds,
    assign_splits,
    own_splits,
    read_folds,
    read_splits,
    split_metrics,
    subject_classes,
    subject_counts,
)
from tests.conftest import raw_params

CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}
DEMO = {"NonDemented": 10, "VeryMildDemented": 7, "MildDemented": 4, "ModerateDemented": 2}


def make_index(subjects: dict[str, int], slices: int = 2, copies: int = 2) -> pd.DataFrame:
    """An index like dedupe's: originals, their copies, and a few rows set aside."""
    rows = []
    for label, count in subjects.items():
        for number in range(count):
            subject = f"{label}-{number:03d}"
            for slice_ in range(slices):
                path = f"OriginalDataset/{label}/{subject}-{slice_}.jpg"
                rows.append((path, label, "original", path, subject, "", "ok", ""))
                for copy in range(copies):
                    copy_path = f"AugmentedAlzheimerDataset/{label}/{subject}-{slice_}-{copy}.jpg"
                    rows.append((copy_path, label, "copy", path, subject, "0.9312", "ok", ""))
    rows.append(("AugmentedAlzheimerDataset/NonDemented/dup.jpg", "NonDemented", "copy",
                 rows[0][0], rows[0][4], "0.99", "duplicate", "same pixels as another copy"))
    rows.append(("OriginalDataset/NonDemented/broken.jpg", "NonDemented", "original",
                 "OriginalDataset/NonDemented/broken.jpg", "NonDemented-broken", "", "rejected", "unreadable"))
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS).assign(source_split="")[list(INDEX_COLUMNS)]
    return frame.sort_values("path", ignore_index=True)


def split_of(rows: pd.DataFrame, kind: str) -> pd.Series:
    """The split of each row of one kind, by path."""
    part = rows[rows["kind"] == kind]
    return part.set_index("path")["split"]


@pytest.mark.parametrize("seed", range(5))
def test_no_subject_or_source_in_two_splits(seed):
    split = assign_splits(make_index(DEMO), CLASSES, RATIOS, seed, copies_in_train=True)
    assert (split.rows.groupby("subject")["split"].nunique() == 1).all()
    assert (split.rows.groupby("source")["split"].nunique() == 1).all()
    metrics = split_metrics(split, CLASSES)
    assert metrics["shared_subjects"] == 0 and metrics["shared_sources"] == 0
    assert "own_splits" not in metrics and "shared_images" not in metrics  # only a source's own splits have them


def test_only_usable_rows_with_index_columns_sorted_by_path():
    index = make_index(DEMO).sample(frac=1, random_state=0)
    split = assign_splits(index, CLASSES, RATIOS, 42, copies_in_train=True)
    assert list(split.rows.columns) == [*ROW_COLUMNS, "split"]
    assert (split.rows["status"] == "ok").all()
    assert split.rows["path"].is_monotonic_increasing
    assert set(split.rows["split"]) == {"train", "val", "test"}


def test_classes_with_three_subjects_fill_all_splits():
    split = assign_splits(make_index(DEMO), CLASSES, RATIOS, 42, copies_in_train=True)
    subjects = split_metrics(split, CLASSES)["splits"]
    counts = {name: [subjects[part]["subjects"][name] for part in ("train", "val", "test")] for name in CLASSES}
    assert counts["NonDemented"] == [6, 2, 2]
    assert counts["VeryMildDemented"] == [5, 1, 1]
    assert counts["MildDemented"] == [2, 1, 1]
    assert subjects["val"]["subjects"]["total"] == 4


@pytest.mark.parametrize("shares", [(0.7, 0.15, 0.15), (0.1, 0.45, 0.45), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)])
def test_three_or_four_subjects_give_every_split_one_whatever_the_ratios(shares):
    index = make_index({"NonDemented": 3, "VeryMildDemented": 4})
    split = assign_splits(index, CLASSES[:2], dict(zip(("train", "val", "test"), shares)), 0, True)
    originals = split.rows[split.rows["kind"] == "original"]
    for label in CLASSES[:2]:
        assert set(originals.loc[originals["label"] == label, "split"]) == {"train", "val", "test"}


def test_small_classes_follow_the_documented_rule():
    index = make_index({"NonDemented": 5, "VeryMildDemented": 3, "MildDemented": 1, "ModerateDemented": 2})
    split = assign_splits(index, CLASSES, RATIOS, 42, copies_in_train=True)
    subjects = split.rows[split.rows["kind"] == "original"].groupby("subject")["split"].first()
    moderate = subjects[subjects.index.str.startswith("ModerateDemented")]
    assert sorted(moderate) == ["test", "train"]
    assert list(subjects[subjects.index.str.startswith("MildDemented")]) == ["train"]
    assert len(split.warnings) == 2
    assert "ModerateDemented has 2 subject" in split.warnings[1]
    assert "MildDemented has 1 subject" in split.warnings[0]
    assert split_metrics(split, CLASSES)["warnings"] == list(split.warnings)


def test_copies_only_in_train_and_only_of_train_sources():
    index = make_index(DEMO)
    split = assign_splits(index, CLASSES, RATIOS, 42, copies_in_train=True)
    originals, copies = split_of(split.rows, "original"), split.rows[split.rows["kind"] == "copy"]
    assert len(copies) > 0 and (copies["split"] == "train").all()
    assert (copies["source"].map(originals) == "train").all()
    usable_copies = index[(index["kind"] == "copy") & (index["status"] == "ok")]
    of_train = usable_copies["source"].map(originals) == "train"
    assert len(copies) == of_train.sum()
    assert split.copies_left_out == {"held_out_source": (~of_train).sum(), "copies_in_train_off": 0,
                                     "source_not_usable": 0}


def test_copies_in_train_off_drops_them():
    index = make_index(DEMO)
    split = assign_splits(index, CLASSES, RATIOS, 42, copies_in_train=False)
    assert (split.rows["kind"] == "original").all()
    with_copies = assign_splits(index, CLASSES, RATIOS, 42, copies_in_train=True)
    kept = (with_copies.rows["kind"] == "copy").sum()
    assert split.copies_left_out["copies_in_train_off"] == kept > 0
    assert split.copies_left_out["held_out_source"] == with_copies.copies_left_out["held_out_source"]


def test_copy_of_an_unusable_original_is_left_out():
    index = make_index(DEMO)
    source = index.loc[index["kind"] == "original", "path"].iloc[0]
    index.loc[index["path"] == source, ["status", "reason"]] = ("conflict", "same pixels under two labels")
    split = assign_splits(index, CLASSES, RATIOS, 42, copies_in_train=True)
    assert source not in set(split.rows["source"])
    assert split.copies_left_out["source_not_usable"] == 2


def test_subject_class_is_the_most_common_label_ties_to_the_earlier_class():
    originals = pd.DataFrame({
        "subject": ["a", "a", "a", "b", "b"],
        "label": ["MildDemented", "NonDemented", "MildDemented", "MildDemented", "VeryMildDemented"],
    })
    assert subject_classes(originals, CLASSES) == {"a": "MildDemented", "b": "VeryMildDemented"}


def test_same_seed_same_bytes_other_seed_other_split():
    index = make_index(DEMO)
    first, again, other = (assign_splits(index, CLASSES, RATIOS, seed, True) for seed in (42, 42, 43))
    assert first.rows.to_csv(index=False, lineterminator="\n") == again.rows.to_csv(index=False, lineterminator="\n")
    assert not split_of(first.rows, "original").equals(split_of(other.rows, "original"))


def test_shared_counts_are_computed_from_the_rows():
    split = assign_splits(make_index(DEMO), CLASSES, RATIOS, 42, copies_in_train=True)
    rows = split.rows
    test_original = rows.index[(rows["kind"] == "original") & (rows["split"] == "test")][0]
    moved = rows.copy()
    moved.loc[test_original, "split"] = "val"
    metrics = split_metrics(dataclasses.replace(split, rows=moved), CLASSES)
    assert (metrics["shared_subjects"], metrics["shared_sources"]) == (1, 0)
    train_copy = rows.index[rows["kind"] == "copy"][0]
    leaked = rows.copy()
    leaked.loc[train_copy, "split"] = "test"
    metrics = split_metrics(dataclasses.replace(split, rows=leaked), CLASSES)
    assert (metrics["shared_subjects"], metrics["shared_sources"]) == (1, 1)


def write_inputs(folder: Path, index: pd.DataFrame, own_splits: bool = False, **sections) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(raw_params(**sections)))
    (folder / "data/interim").mkdir(parents=True)
    index.to_csv(folder / "data/interim/index.csv", index=False, lineterminator="\n")
    write_source_info(folder / "data/interim/source.json", SourceInfo("archive", "data/raw/demo", CLASSES, 1,
                                                                      own_splits))


def test_main_writes_splits_and_metrics(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    index = make_index(DEMO)
    write_inputs(tmp_path, index)
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.split"):
        main(load_params(Path("params.yaml")))
    assert any("ModerateDemented has 2 subject" in record.message for record in caplog.records)
    written = Path("data/splits.csv").read_text()
    index_lines = [line.removesuffix(",") for line in Path("data/interim/index.csv").read_text().splitlines()]
    assert written.splitlines()[0] == index_lines[0].removesuffix(",source_split") + ",split"
    kept = {line.rsplit(",", 1)[0] for line in written.splitlines()[1:]}
    assert kept <= set(index_lines[1:])
    assert "0.9312" in written and "\r" not in written
    metrics = json.loads(Path("metrics/split.json").read_text())
    assert metrics["shared_subjects"] == 0 and metrics["shared_sources"] == 0
    assert sum(metrics["splits"][name]["images"]["total"] for name in ("train", "val", "test")) == len(kept)
    assert len(metrics["warnings"]) == 1
    first = Path("data/splits.csv").read_bytes()
    main(load_params(Path("params.yaml")))
    assert Path("data/splits.csv").read_bytes() == first


def test_main_refuses_a_leaky_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = make_index(DEMO)
    split = assign_splits(index, CLASSES, RATIOS, raw_params()["seed"], copies_in_train=True)
    rows = split.rows
    train_copy = rows.loc[rows["kind"] == "copy", "path"].iloc[0]
    test_subject = rows.loc[rows["split"] == "test", "subject"].iloc[0]
    index.loc[index["path"] == train_copy, "subject"] = test_subject
    write_inputs(tmp_path, index)
    with pytest.raises(PipelineError, match="more than one split"):
        main(load_params(Path("params.yaml")))
    assert not Path("data/splits.csv").exists()


def test_main_without_index_says_to_run_dedupe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params()))
    with pytest.raises(PipelineError, match="dvc repro dedupe"):
        main(load_params(Path("params.yaml")))


def test_the_demo_gives_two_val_and_two_test_subjects_to_every_class_but_the_rarest():
    params = parse_params(raw_params())  # the committed demo; README's results rest on this
    counts = dict(params.synth.subjects)
    rarest = min(counts, key=counts.get)
    for label, n in counts.items():
        if label != rarest:
            train, val, test = subject_counts(n, params.split.ratios)
            assert min(val, test) >= 2, (label, n, train, val, test)


def test_labels_outside_data_classes_are_refused_naming_the_first():
    index = make_index({"NonDemented": 3, "MildDemented": 3})
    index.loc[index["label"] == "MildDemented", "label"] = "Zeta"
    index.loc[index.index[:2], "label"] = "Alpha"
    with pytest.raises(PipelineError, match=r"^index: label 'Alpha' is not in data.classes \['NonDemented', 'VeryMild"):
        assign_splits(index, CLASSES, RATIOS, 0, copies_in_train=True)


def test_rows_with_empty_fields_are_kept_and_numbered_from_zero_in_path_order():
    index = make_index(DEMO).sample(frac=1, random_state=1)
    index["reason"] = None  # as pandas reads an empty field without keep_default_na=False
    index.loc[index["kind"] == "original", "score"] = float("nan")
    split = assign_splits(index, CLASSES, RATIOS, 0, copies_in_train=True)
    assert len(split.rows) == (index["status"] == "ok").sum() - sum(split.copies_left_out.values())
    assert split.rows.index.equals(pd.RangeIndex(len(split.rows)))
    assert split.rows["path"].is_monotonic_increasing


@pytest.mark.parametrize("shares", [(0.7, 0.15, 0.15), (0.1, 0.45, 0.45), (0.34, 0.33, 0.33), (0.9, 0.05, 0.05)])
def test_subject_counts_add_up_to_the_subjects_of_the_class(shares):
    for n in range(1, 40):
        train, val, test = subject_counts(n, dict(zip(("train", "val", "test"), shares)))
        assert train + val + test == n and min(train, val, test) >= 0, (n, train, val, test)
        assert train >= 1


def test_metrics_count_images_per_class_and_report_copies_left_out():
    split = assign_splits(make_index(DEMO, slices=3, copies=1), CLASSES, RATIOS, 7, copies_in_train=True)
    metrics = split_metrics(split, CLASSES)
    table = pd.crosstab(split.rows["split"], split.rows["label"])
    for name in ("train", "val", "test"):
        images = metrics["splits"][name]["images"]
        assert images == {**{label: int(table.loc[name, label]) for label in CLASSES}, "total": int(table.loc[name].sum())}
    assert metrics["copies_left_out"] == split.copies_left_out and sum(split.copies_left_out.values()) > 0


def test_small_class_warnings_say_where_the_subjects_go():
    index = make_index({"NonDemented": 3, "MildDemented": 1, "ModerateDemented": 2})
    split = assign_splits(index, CLASSES, RATIOS, 0, copies_in_train=True)
    needed = "fewer than the 3 needed for train, val and test"
    assert split.warnings == (
        f"class VeryMildDemented has 0 subject(s), {needed}: it is in no split",
        f"class MildDemented has 1 subject(s), {needed}: it goes to train only",
        f"class ModerateDemented has 2 subject(s), {needed}: one goes to train and one to test, none to val",
    )


SPLITS_HEADER = "path,label,kind,source,subject,score,status,reason,split\n"


def test_read_splits_gives_the_rows_in_file_order_with_names_unescaped(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text(SPLITS_HEADER + "b\\x0dc.jpg,MildDemented,original,b\\x0dc.jpg,s\\\\2,,ok,,test\n"
                    "a.jpg,NonDemented,copy,o.jpg,s1,0.9,ok,,train\n", encoding="utf-8")
    assert read_splits(path, CLASSES) == [
        SplitRow(path="b\rc.jpg", label="MildDemented", split="test", subject="s\\2", source="b\rc.jpg",
                 kind="original"),
        SplitRow(path="a.jpg", label="NonDemented", split="train", subject="s1", source="o.jpg", kind="copy"),
    ]


def test_read_splits_says_what_is_wrong_and_where(tmp_path):
    path = tmp_path / "splits.csv"
    where = re.escape(str(path))
    with pytest.raises(PipelineError, match=rf"^{where} not found; run `dvc repro split` first$"):
        read_splits(path, CLASSES)
    path.write_text("path,label,kind,source,score\na.jpg,NonDemented,original,a.jpg,\n")
    with pytest.raises(PipelineError, match=rf"^{where}: missing column\(s\) split, subject$"):
        read_splits(path, CLASSES)
    path.write_text("")
    with pytest.raises(PipelineError, match=rf"^{where}: missing column\(s\) path, label, split, subject"):
        read_splits(path, CLASSES)
    good = "a.jpg,NonDemented,original,a.jpg,s1,,ok,,train\n"
    path.write_text(SPLITS_HEADER + good + "b.jpg,Healthy,original,b.jpg,s2,,ok,,train\n")
    with pytest.raises(PipelineError, match=rf"^{where}, line 3: label 'Healthy' is not one of "):
        read_splits(path, CLASSES)
    path.write_text(SPLITS_HEADER + good + good + "c.jpg,NonDemented,original,c.jpg,s3,,ok,,holdout\n")
    with pytest.raises(PipelineError, match=rf"^{where}, line 4: split 'holdout' is not one of train, val, test$"):
        read_splits(path, CLASSES)


@pytest.mark.parametrize("n, shares, counts", [
    (10, (0.05, 0.55, 0.40), (1, 5, 4)),  # val is the larger: it gives back one subject
    (10, (0.05, 0.40, 0.55), (1, 4, 5)),  # test is the larger
    (4, (0.1, 0.45, 0.45), (1, 1, 2)),  # a tie: val gives back first, test keeps its share
])
def test_overfull_val_and_test_give_back_one_subject_at_a_time_larger_first(n, shares, counts):
    assert subject_counts(n, dict(zip(("train", "val", "test"), shares))) == counts


def own_index(rows: list[tuple[str, str, str, str]], status: dict[str, str] | None = None) -> pd.DataFrame:
    """An index of a source that ships its splits: (path, label, subject, source_split) per row."""
    frame = pd.DataFrame([(path, label, "original", path, subject, "", "ok", "", split)
                          for path, label, subject, split in rows], columns=INDEX_COLUMNS)
    for path, value in (status or {}).items():
        frame.loc[frame["path"] == path, ["status", "reason"]] = value, "unreadable"
    return frame


SHIPPED = [("train/a.png", "NonDemented", "g1", "train"), ("validation/a.png", "NonDemented", "g1", "val"),
           ("test/a.png", "NonDemented", "g1", "test"), ("test/b.png", "MildDemented", "g2", "test"),
           ("validation/c.png", "MildDemented", "g3", "val"), ("test/c.png", "MildDemented", "g3", "test"),
           ("train/d.png", "NonDemented", "g4", "train")]


def test_own_splits_keep_the_source_s_splits_and_count_images_twinned_in_an_earlier_split():
    kept = own_splits(own_index(SHIPPED, {"train/d.png": "rejected"}), CLASSES, drop_shared_images=False)
    assert dict(zip(kept.rows["path"], kept.rows["split"])) == {path: split for path, _, _, split in SHIPPED
                                                                if path != "train/d.png"}
    assert list(kept.rows.columns) == [*ROW_COLUMNS, "split"] and kept.rows["path"].is_monotonic_increasing
    assert kept.shared_images == {"images": 3, "dropped": False,
                                  "examples": ["test/a.png", "test/c.png", "validation/a.png"]}
    assert kept.rows.index.equals(pd.RangeIndex(len(SHIPPED) - 1))
    assert kept.warnings == (("3 image(s) of the source's own val/test splits are pixel-identical to one in an earlier "
                              "split, e.g. test/a.png; kept, so those splits leak (set split.drop_shared_images: true "
                              "to drop them)"),)
    metrics = split_metrics(kept, CLASSES)
    assert metrics["own_splits"] and metrics["shared_images"] == kept.shared_images
    assert metrics["shared_subjects"] == 2  # g1 and g3 span splits: counted, not refused (the stage reports them)


def test_own_splits_drop_the_later_twins_when_asked_and_refuse_unknown_labels():
    dropped = own_splits(own_index(SHIPPED), CLASSES, drop_shared_images=True)
    assert sorted(dropped.rows["path"]) == ["test/b.png", "train/a.png", "train/d.png", "validation/c.png"]
    assert dropped.shared_images["images"] == 3 and dropped.shared_images["dropped"]
    assert dropped.warnings[0].endswith("pixel-identical to one in an earlier split, e.g. test/a.png; left out "
                                        "(split.drop_shared_images)")
    assert dropped.rows.index.equals(pd.RangeIndex(4))
    assert split_metrics(dropped, CLASSES)["shared_subjects"] == 0
    clean = own_splits(own_index([row for row in SHIPPED if row[2] in ("g2", "g4")]), CLASSES, True)
    assert clean.warnings == () and clean.shared_images["images"] == 0 and len(clean.rows) == 2
    with pytest.raises(PipelineError, match="label 'Tulip' is not among the source's classes"):
        own_splits(own_index([("train/t.png", "Tulip", "t", "train")]), CLASSES, False)


def test_own_splits_name_the_first_twenty_shared_images_in_path_order():
    twins = [(f"test/{number:02d}.png", "NonDemented", "g1", "test") for number in range(25, -1, -1)]
    shared = own_splits(own_index([("train/a.png", "NonDemented", "g1", "train"), *twins]), CLASSES, False)
    assert shared.shared_images["examples"] == [f"test/{number:02d}.png" for number in range(20)]
    assert shared.warnings[0].startswith("26 image(s) of the source's own val/test splits") and "e.g. test/00.png;" in \
        shared.warnings[0]



@pytest.mark.parametrize(("seed", "n_folds"), [(0, 3), (1, 3), (2, 5), (3, 2)])
def test_folds_test_every_subject_once_and_keep_each_fold_s_subjects_and_sources_whole(seed, n_folds):
    index = make_index(DEMO)
    folds = assign_folds(index, CLASSES, RATIOS, seed, copies_in_train=True, n_folds=n_folds)
    assert len(folds.splits) == n_folds
    tested = pd.concat([split.rows.loc[split.rows["split"] == "test", "subject"].drop_duplicates()
                        for split in folds.splits])
    usable = index.loc[(index["status"] == "ok") & (index["kind"] == "original"), "subject"]
    assert sorted(tested) == sorted(usable.unique())  # each usable subject in exactly one fold's test
    for split in folds.splits:
        assert (split.rows.groupby("subject")["split"].nunique() == 1).all()
        assert (split.rows.groupby("source")["split"].nunique() == 1).all()
        assert set(split.rows.loc[split.rows["split"] != "train", "kind"]) == {"original"}
        per_class_val = split.rows[split.rows["split"] == "val"].groupby("label")["subject"].nunique()
        assert per_class_val.get("NonDemented", 0) >= 1 and per_class_val.get("MildDemented", 0) >= 1


def test_folds_stratify_subjects_by_class_and_carve_val_by_the_ratios():
    folds = assign_folds(make_index(DEMO), CLASSES, RATIOS, 0, copies_in_train=True, n_folds=2)
    for split in folds.splits:
        test = split.rows[split.rows["split"] == "test"].groupby("label")["subject"].nunique()
        assert test["NonDemented"] == 5 and test["MildDemented"] == 2 and test["ModerateDemented"] == 1
    assert folds.warnings == ()
    large = assign_folds(make_index({**DEMO, "NonDemented": 40}), CLASSES, RATIOS, 0, copies_in_train=True, n_folds=2)
    for split in large.splits:
        val = split.rows[split.rows["split"] == "val"].groupby("label")["subject"].nunique()
        assert val["NonDemented"] == round(20 * 0.15 / 0.85) == 4  # of the 20 outside test; 0.15 of them would be 3


def test_more_folds_than_subjects_are_refused_naming_the_key():
    with pytest.raises(PipelineError, match="split.folds = 30, but the index has 23 usable subjects"):
        assign_folds(make_index(DEMO), CLASSES, RATIOS, 0, copies_in_train=True, n_folds=30)


def test_folds_against_the_demo_truth_test_every_true_subject_once(tiny_archive, tiny_params, tmp_path, monkeypatch):
    """Three folds of the tiny demo, as the stage writes them, judged by the archive's truth file alone."""
    rows, _ = build_index(tiny_archive, tiny_params.data.classes, tiny_params.dedupe)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/interim").mkdir(parents=True)
    write_index(tmp_path / "data/interim/index.csv", rows)
    write_source_info(tmp_path / "data/interim/source.json", SourceInfo("archive", str(tiny_archive), CLASSES, 1,
                                                                        False))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params(split={"folds": 3},
                                                                    data={"archive": str(tiny_archive)})))
    main(load_params(Path("params.yaml")))
    written = pd.read_csv("data/splits.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv(truth_file(tiny_archive), dtype=str, keep_default_na=False).set_index("path")["subject"]
    written["true_subject"] = written["path"].map(truth)
    assert written["true_subject"].notna().all() and sorted(written["fold"].unique()) == ["0", "1", "2"]
    tested = written[written["split"] == "test"].groupby("true_subject")["fold"].nunique()
    originals = truth[truth.index.str.startswith("OriginalDataset/")]
    assert set(tested.index) == set(originals) and (tested == 1).all()  # every true subject in one fold's test
    assert (written.groupby(["fold", "true_subject"])["split"].nunique() == 1).all()  # no subject in two splits
    metrics = json.loads(Path("metrics/split.json").read_text())
    assert (metrics["folds"], metrics["subjects_tested_once"], metrics["shared_subjects"]) == (3, 11, 0)
    assert [fold["truth"]["true_subjects_in_several_splits"] for fold in metrics["per_fold"]] == [0, 0, 0]
    with pytest.raises(PipelineError, match="holds several folds"):
        read_splits(Path("data/splits.csv"), CLASSES)
    first = Path("data/splits.csv").read_bytes()
    main(load_params(Path("params.yaml")))
    assert Path("data/splits.csv").read_bytes() == first  # same params and seed, same bytes


def test_a_fold_that_leaks_stops_the_stage_naming_the_fold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = make_index(DEMO)
    folds = assign_folds(index, CLASSES, RATIOS, raw_params()["seed"], copies_in_train=True, n_folds=3)
    rows = folds.splits[1].rows
    test_subject = rows.loc[rows["split"] == "test", "subject"].iloc[0]
    train_copy = rows.loc[(rows["kind"] == "copy") & (rows["split"] == "train"), "path"].iloc[0]
    index.loc[index["path"] == train_copy, "subject"] = test_subject
    write_inputs(tmp_path, index, split={"folds": 3})
    with pytest.raises(PipelineError, match="in fold 1, 1 subjects and 0 sources would fall in more than one split"):
        main(load_params(Path("params.yaml")))
    assert not Path("data/splits.csv").exists()


def test_folds_with_a_source_s_own_splits_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path, make_index(DEMO).assign(source_split="train"), own_splits=True, split={"folds": 3})
    with pytest.raises(PipelineError, match="set split.source_splits: false"):
        main(load_params(Path("params.yaml")))


def test_read_folds_gives_each_folds_rows_and_read_splits_refuses_several(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text(SPLITS_HEADER.replace("split\n", "split,fold\n")
                    + "a.jpg,NonDemented,original,a.jpg,s1,,ok,,test,0\nb.jpg,MildDemented,original,b.jpg,s2,,ok,,train,0\n"
                    + "a.jpg,NonDemented,original,a.jpg,s1,,ok,,train,1\nb.jpg,MildDemented,original,b.jpg,s2,,ok,,test,1\n",
                    encoding="utf-8")
    folds = read_folds(path, CLASSES)
    assert [[(row.path, row.split) for row in rows] for rows in folds] == [[("a.jpg", "test"), ("b.jpg", "train")],
                                                                          [("a.jpg", "train"), ("b.jpg", "test")]]
    with pytest.raises(PipelineError, match="holds several folds"):
        read_splits(path, CLASSES)
