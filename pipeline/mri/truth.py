"""Score the dedupe stage against a synthetic archive's ground truth."""

from collections import defaultdict
from pathlib import Path

import pandas as pd

EXAMPLES = 3  # examples of each grouping fault in metrics/dedupe.json


def score_against_truth(rows, truth_path: Path) -> dict:
    """Copy-to-source and copy-to-subject accuracy, orphan rate and subject grouping quality."""
    truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False).set_index("path")
    truth_subject = truth["subject"].to_dict()
    copies = [row for row in rows if row.kind == "copy" and row.path in truth.index]
    placed = [row for row in copies if row.status in {"ok", "duplicate"} and row.source]
    orphans = sum(row.status == "orphan" for row in copies)
    right_source = sum(row.source == truth.at[row.path, "source"] for row in placed)
    right_subject = sum(truth_subject.get(row.source) == truth_subject[row.path] for row in placed)
    return {
        "copies": len(copies),
        "copies_placed": len(placed),
        "copy_source_accuracy": _share(right_source, len(placed)),
        "copy_subject_accuracy": _share(right_subject, len(placed)),
        "orphan_rate": _share(orphans, len(copies)),
        **_grouping(rows, truth_subject),
    }


def subjects_across_splits(split_paths: dict[str, str], truth_path: Path) -> dict:
    """How many true subjects have files in more than one split (must be 0)."""
    truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False)
    splits_by_subject = defaultdict(set)
    for path, subject in zip(truth["path"], truth["subject"]):
        if path in split_paths:
            splits_by_subject[subject].add(split_paths[path])
    return {
        "true_subjects": len(splits_by_subject),
        "true_subjects_in_several_splits": sum(len(splits) > 1 for splits in splits_by_subject.values()),
    }


def _grouping(rows, truth_subject: dict[str, str]) -> dict:
    """How the originals' subjects compare with the true subjects: counts, and a few examples of each fault.

    A true subject is recovered when its originals form exactly one found subject holding no other.
    """
    found_by_true, true_by_found = defaultdict(set), defaultdict(set)
    for row in rows:
        if row.kind == "original" and row.status == "ok" and row.path in truth_subject:
            found_by_true[truth_subject[row.path]].add(row.subject)
            true_by_found[row.subject].add(truth_subject[row.path])
    split = {true: sorted(found) for true, found in sorted(found_by_true.items()) if len(found) > 1}
    mixed = {found: sorted(true) for found, true in sorted(true_by_found.items()) if len(true) > 1}
    recovered = sum(len(found) == 1 and len(true_by_found[next(iter(found))]) == 1 for found in found_by_true.values())
    return {
        "true_subjects": len(found_by_true),
        "found_subjects": len(true_by_found),
        "true_subjects_recovered": recovered,
        "true_subjects_split": len(split),
        "found_subjects_mixed": len(mixed),
        "examples": {
            "true_subjects_split": dict(list(split.items())[:EXAMPLES]),  # true subject: the found subjects it spans
            "found_subjects_mixed": dict(list(mixed.items())[:EXAMPLES]),  # found subject: the true subjects it mixes
        },
    }


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None
