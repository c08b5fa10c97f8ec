"""Whole subjects to train, val and test, stratified by class.

Each subject belongs to the class of its originals (the most common label if they disagree,
ties to the earlier class in `data.classes`). Per class, the sorted subjects are shuffled by
a generator seeded from (`seed`, class position) and dealt out in order: test, val, train,
by `split.ratios`, rounded, with at least one subject each in test and val and the rest,
at least one, in train.

A class with fewer than 3 subjects cannot fill three splits. The rule then, logged as a
warning and listed under `warnings` in metrics/split.json: with 2 subjects, one goes to
train and one to test, none to val; with 1 subject, it goes to train only.

Originals follow their subject. A copy joins train only when its source original is in
train and `split.copies_in_train` is true; val and test hold originals only. Copies left
out are counted by reason under `copies_left_out`: `held_out_source` (source in val or
test), `copies_in_train_off`, and `source_not_usable` (source original not `ok` in the index).

With `split.folds` = k > 1 (`assign_folds`), the usable subjects, one row each labelled with its class, go through
scikit-learn's StratifiedGroupKFold (k parts, shuffled with `seed`): fold i's test is part i, so every subject is in
exactly one fold's test. Per class, the subjects outside it are shuffled by a generator seeded from (`seed`, fold,
class position) and dealt to val, then train: val gets val / (train + val) of `split.ratios`, rounded, at least one
when the class has two or more (one: train only), at least one left for train. `ratios`' test share is then unused
(a fold's test holds about 1/k). splits.csv holds each usable row once per fold it is placed in, with `fold`, fold
by fold; with k = 1 there is no `fold` column and the file is the single split above, byte for byte.
"""

import csv
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.core.errors import PipelineError, require_file
from pipeline.core.params import SPLITS
from pipeline.core.text import unescape
from pipeline.tables.index import ROW_COLUMNS


@dataclass(frozen=True)
class SplitRow:
    """The columns of splits.csv that preprocess and the TFRecords carry."""
    path: str  # relative to the archive root, '/'-separated
    label: str
    split: str
    subject: str
    source: str
    kind: str


@dataclass(frozen=True)
class Split:
    rows: pd.DataFrame  # the usable index rows kept, plus `split`, sorted by path
    warnings: tuple[str, ...]
    copies_left_out: dict[str, int]  # reason -> count
    shared_images: dict | None = None  # source splits: images identical to one in an earlier split


def assign_splits(index: pd.DataFrame, classes: tuple[str, ...], ratios: Mapping[str, float],
                  seed: int, copies_in_train: bool) -> Split:
    """Place the usable rows of the index in train, val or test by subject, stratified by class."""
    usable = usable_rows(index, classes)
    subject_class = subject_classes(usable[usable["kind"] == "original"], classes)
    subject_split: dict[str, str] = {}
    notes = []
    for rank, name in enumerate(classes):
        order = shuffled(class_subjects(subject_class, name), [seed, rank])
        n_train, n_val, n_test = subject_counts(len(order), ratios)
        if len(order) < 3:
            notes.append(_small_class_warning(name, len(order)))
        for subject, split in zip(order, ["test"] * n_test + ["val"] * n_val + ["train"] * n_train):
            subject_split[subject] = split
    rows, copies_left_out = place_rows(usable, subject_split, copies_in_train)
    return Split(rows=rows, warnings=tuple(notes), copies_left_out=copies_left_out)


@dataclass(frozen=True)
class Folds:
    splits: tuple[Split, ...]  # fold i's train, val and test, its rows without a `fold` column
    warnings: tuple[str, ...]  # what holds for the folds as a whole


def assign_folds(index: pd.DataFrame, classes: tuple[str, ...], ratios: Mapping[str, float], seed: int,
                 copies_in_train: bool, n_folds: int) -> Folds:
    """k folds by subject: fold i's test is part i of StratifiedGroupKFold over the usable subjects (stratified by
    their class), its val carved from the other subjects per class by `ratios`' share of val in train and val, its
    train the rest; copies as in `assign_splits`."""
    usable = usable_rows(index, classes)
    subject_class = subject_classes(usable[usable["kind"] == "original"], classes)
    if len(subject_class) < n_folds:
        raise PipelineError(f"split.folds = {n_folds}, but the index has {len(subject_class)} usable subjects: "
                            f"ask for at most {len(subject_class)} folds")
    subjects = np.array(sorted(subject_class))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # one row per subject; the classes that fall short get a warning below
        warnings.filterwarnings("ignore", "The least populated class in y has only")
        tests = [set(subjects[part]) for _, part in
                 splitter.split(subjects, [subject_class[subject] for subject in subjects], groups=subjects)]
    val_share = ratios["val"] / (ratios["val"] + ratios["train"])
    notes = [f"class {name} has {count} subject(s), fewer than split.folds = {n_folds}: {n_folds - count} fold(s) "
             "test none of them" for name in classes
             if (count := len(class_subjects(subject_class, name))) < n_folds]
    splits = []
    for fold, test in enumerate(tests):
        subject_split = dict.fromkeys(test, "test")
        fold_warnings = []
        for rank, name in enumerate(classes):
            order = shuffled(sorted(set(class_subjects(subject_class, name)) - test), [seed, fold, rank])
            n_val = val_count(len(order), val_share)
            if len(order) == 1:
                fold_warnings.append(f"fold {fold}: class {name} has one subject outside test; it goes to train only")
            subject_split.update(zip(order, ["val"] * n_val + ["train"] * (len(order) - n_val)))
        rows, copies_left_out = place_rows(usable, subject_split, copies_in_train)
        splits.append(Split(rows=rows, warnings=tuple(fold_warnings), copies_left_out=copies_left_out))
    return Folds(splits=tuple(splits), warnings=tuple(notes))


def val_count(n: int, share: float) -> int:
    """Val subjects among the n of one class outside a fold's test: none for n < 2, else at least one, and at least
    one left for train."""
    return 0 if n < 2 else min(n - 1, max(1, round(n * share)))


def stack_folds(folds: Folds) -> pd.DataFrame:
    """Every fold's rows with its number in `fold`, fold by fold, each in path order."""
    return pd.concat([split.rows.assign(fold=fold) for fold, split in enumerate(folds.splits)], ignore_index=True)


def usable_rows(index: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """The index rows with status ok, in ROW_COLUMNS; a label outside `classes` stops the split."""
    usable = index.loc[index["status"] == "ok", list(ROW_COLUMNS)]
    unknown = sorted(set(usable["label"]) - set(classes))
    if unknown:
        raise PipelineError(f"index: label {unknown[0]!r} is not in data.classes {list(classes)}")
    return usable


def class_subjects(subject_class: dict[str, str], name: str) -> list[str]:
    """The sorted subjects of one class."""
    return sorted(subject for subject, label in subject_class.items() if label == name)


def shuffled(subjects: list[str], seed: list[int]) -> list[str]:
    """The subjects in the order of a permutation drawn from a generator seeded with `seed`."""
    return [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]


def place_rows(usable: pd.DataFrame, subject_split: dict[str, str],
               copies_in_train: bool) -> tuple[pd.DataFrame, dict[str, int]]:
    """The usable rows with their split, in path order: originals follow their subject, copies of train sources join
    train (with `copies_in_train`), the other copies are left out and counted by reason."""
    originals = usable[usable["kind"] == "original"]
    split = pd.Series(pd.NA, index=usable.index, dtype=object)
    split[originals.index] = originals["subject"].map(subject_split)
    copies = usable[usable["kind"] == "copy"]
    source_split = copies["source"].map(dict(zip(originals["path"], split[originals.index])))
    in_train = source_split == "train"
    if copies_in_train:
        split[copies.index[in_train]] = "train"
    copies_left_out = {
        "held_out_source": int(source_split.isin(["val", "test"]).sum()),
        "copies_in_train_off": 0 if copies_in_train else int(in_train.sum()),
        "source_not_usable": int(source_split.isna().sum()),
    }
    rows = usable.assign(split=split).dropna(subset=["split"])
    return rows.sort_values("path", kind="mergesort", ignore_index=True), copies_left_out


def own_splits(index: pd.DataFrame, classes: tuple[str, ...], drop_shared_images: bool) -> Split:
    """The source's own train/val/test (the index's `source_split`), for the usable rows.

    Images pixel-identical to one in an earlier split (train, then val, then test) share its group: they are
    counted under `shared_images` in the metrics and, with `drop_shared_images`, left out of the later split.
    """
    usable = index.loc[index["status"] == "ok"].rename(columns={"source_split": "split"})
    unknown = sorted(set(usable["label"]) - set(classes))
    if unknown:
        raise PipelineError(f"index: label {unknown[0]!r} is not among the source's classes")
    order = usable["split"].map({name: rank for rank, name in enumerate(SPLITS)})
    first = order.groupby(usable["subject"]).transform("min")
    later = order > first
    shared = {"images": int(later.sum()), "dropped": drop_shared_images,
              "examples": sorted(usable.loc[later, "path"])[:20]}
    warnings = []
    if later.any():
        warnings.append(f"{shared['images']} image(s) of the source's own val/test splits are pixel-identical to one "
                        f"in an earlier split, e.g. {shared['examples'][0]}"
                        + ("; left out (split.drop_shared_images)" if drop_shared_images else
                           "; kept, so those splits leak (set split.drop_shared_images: true to drop them)"))
    rows = usable[~later] if drop_shared_images else usable
    rows = rows.sort_values("path", kind="mergesort", ignore_index=True)
    return Split(rows=rows, warnings=tuple(warnings), copies_left_out={}, shared_images=shared)


def subject_classes(originals: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, str]:
    """Each subject's class: the most common label of its originals, ties to the earlier class."""
    rank = {name: position for position, name in enumerate(classes)}
    counts = originals.groupby(["subject", "label"]).size()
    ranked = sorted(counts.items(), key=lambda item: (item[0][0], -item[1], rank[item[0][1]]))
    result: dict[str, str] = {}
    for (subject, label), _ in ranked:
        result.setdefault(subject, label)
    return result


def subject_counts(n: int, shares: Mapping[str, float]) -> tuple[int, int, int]:
    """Subjects of one class for (train, val, test); see the module docstring for n < 3."""
    if n < 3:
        return min(n, 1), 0, n // 2
    test = max(1, round(n * shares["test"]))
    val = max(1, round(n * shares["val"]))
    while n - test - val < 1:
        if val >= test:
            val -= 1
        else:
            test -= 1
    return n - test - val, val, test


def split_metrics(split: Split, classes: tuple[str, ...]) -> dict:
    """Images and subjects per split and class, leaks counted from the rows, warnings, copies left out."""
    rows = split.rows
    per_split = {}
    for name in SPLITS:
        part = rows[rows["split"] == name]
        images = {label: int((part["label"] == label).sum()) for label in classes}
        subjects = {label: int(part.loc[part["label"] == label, "subject"].nunique()) for label in classes}
        per_split[name] = {
            "images": {**images, "total": len(part)},
            "subjects": {**subjects, "total": int(part["subject"].nunique())},
        }
    return {
        "splits": per_split,
        "shared_subjects": int((rows.groupby("subject")["split"].nunique() > 1).sum()),
        "shared_sources": int((rows.groupby("source")["split"].nunique() > 1).sum()),
        "warnings": list(split.warnings),
        "copies_left_out": dict(split.copies_left_out),
        **({"own_splits": True, "shared_images": split.shared_images} if split.shared_images is not None else {}),
    }


def folds_metrics(folds: Folds, classes: tuple[str, ...]) -> dict:
    """`split_metrics` per fold under `per_fold`, their leaks summed, the warnings, and how many subjects each fold
    tests and how often each usable subject is tested (exactly once each: `subjects_tested_once` = `subjects`)."""
    per_fold = [split_metrics(split, classes) for split in folds.splits]
    tested = pd.concat([split.rows.loc[split.rows["split"] == "test", "subject"].drop_duplicates()
                        for split in folds.splits]).value_counts()
    subjects = pd.concat([split.rows["subject"] for split in folds.splits]).nunique()
    return {
        "folds": len(folds.splits),
        "per_fold": per_fold,
        "shared_subjects": sum(fold["shared_subjects"] for fold in per_fold),
        "shared_sources": sum(fold["shared_sources"] for fold in per_fold),
        "subjects": int(subjects),
        "subjects_tested_once": int((tested == 1).sum()),
        "warnings": list(folds.warnings),
    }


def _small_class_warning(name: str, n: int) -> str:
    placement = {2: "one goes to train and one to test, none to val", 1: "it goes to train only"}
    where = placement.get(n, "it is in no split")
    return f"class {name} has {n} subject(s), fewer than the 3 needed for train, val and test: {where}"


def read_splits(path: Path, classes: tuple[str, ...]) -> list[SplitRow]:
    """The rows of a single split's splits.csv (no `fold` column), in file order, with known labels and splits."""
    folds = read_folds(path, classes)
    if len(folds) > 1:
        raise PipelineError(f"{path} holds several folds (split.folds > 1), where one split was expected")
    return folds[0]


def read_folds(path: Path, classes: tuple[str, ...]) -> list[list[SplitRow]]:
    """The rows of splits.csv per fold (fold 0, 1, ...: one list for a single split), each in file order, with known
    labels and splits."""
    require_file(path, "split")
    columns = [field.name for field in fields(SplitRow)]
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in columns if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
        records = list(reader)
    rows = [SplitRow(**{column: unescape(record[column]) for column in columns}) for record in records]
    fold_of = [int(record.get("fold") or 0) for record in records]
    for line, row in enumerate(rows, start=2):
        if row.label not in classes:
            raise PipelineError(f"{path}, line {line}: label {row.label!r} is not one of the source's classes")
        if row.split not in SPLITS:
            raise PipelineError(f"{path}, line {line}: split {row.split!r} is not one of {', '.join(SPLITS)}")
    return [[row for row, fold in zip(rows, fold_of) if fold == number] for number in range(max(fold_of, default=0) + 1)]
