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
"""

import csv
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

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


def assign_splits(index: pd.DataFrame, classes: tuple[str, ...], ratios: tuple[tuple[str, float], ...],
                  seed: int, copies_in_train: bool) -> Split:
    """Place the usable rows of the index in train, val or test by subject, stratified by class."""
    usable = index.loc[index["status"] == "ok", list(ROW_COLUMNS)]
    unknown = sorted(set(usable["label"]) - set(classes))
    if unknown:
        raise PipelineError(f"index: label {unknown[0]!r} is not in data.classes {list(classes)}")
    originals = usable[usable["kind"] == "original"]
    subject_class = subject_classes(originals, classes)
    subject_split: dict[str, str] = {}
    warnings = []
    shares = dict(ratios)
    for rank, name in enumerate(classes):
        subjects = sorted(subject for subject, label in subject_class.items() if label == name)
        order = [subjects[i] for i in np.random.default_rng([seed, rank]).permutation(len(subjects))]
        n_train, n_val, n_test = subject_counts(len(subjects), shares)
        if len(subjects) < 3:
            warnings.append(_small_class_warning(name, len(subjects)))
        for subject, split in zip(order, ["test"] * n_test + ["val"] * n_val + ["train"] * n_train):
            subject_split[subject] = split

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
    rows = rows.sort_values("path", kind="mergesort", ignore_index=True)
    return Split(rows=rows, warnings=tuple(warnings), copies_left_out=copies_left_out)


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


def subject_counts(n: int, shares: dict[str, float]) -> tuple[int, int, int]:
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


def _small_class_warning(name: str, n: int) -> str:
    placement = {2: "one goes to train and one to test, none to val", 1: "it goes to train only"}
    where = placement.get(n, "it is in no split")
    return f"class {name} has {n} subject(s), fewer than the 3 needed for train, val and test: {where}"


def read_splits(path: Path, classes: tuple[str, ...]) -> list[SplitRow]:
    """The rows of splits.csv, in file order, with known labels and splits."""
    require_file(path, "split")
    columns = [field.name for field in fields(SplitRow)]
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in columns if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = [SplitRow(**{column: unescape(record[column]) for column in columns}) for record in reader]
    for line, row in enumerate(rows, start=2):
        if row.label not in classes:
            raise PipelineError(f"{path}, line {line}: label {row.label!r} is not one of the source's classes")
        if row.split not in SPLITS:
            raise PipelineError(f"{path}, line {line}: split {row.split!r} is not one of {', '.join(SPLITS)}")
    return rows
