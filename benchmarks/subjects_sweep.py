"""Subjects from pixels on archives from `tests/other_archive.py`, a generator unlike `synth`, over its settings.

    python benchmarks/subjects_sweep.py [--seeds 1 2] [--workdir /tmp/subjects-sweep]

Per setting and seed: an archive of 17 subjects of 32 slices (6, 5, 4, 2 per class) with opaque
names and 20 Keras-like copies per class, at 2 mm per pixel (104 x 88); `build_index` with the
committed params (dedupe.slices_per_subject 32), the split of the committed params, then: true
subjects recovered as groups of their own, true subjects over several found groups, true
subjects in several splits, decisions taken on weak evidence, and the audit's pixel check on the
split (images as close to another split as to their own subject; pairs of subjects in two splits
that go on one into the other). The cut-subject check's false alarms and power, on the true
subjects: its highest score over every pair of true subjects of a class (as if each were in a split
of its own), and how many of the 17 true subjects, each cut in turn at a random slice with the
upper part in another split, it catches. Prints a markdown table.
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.analysis.straddle import cut_subjects, straddling_images
from pipeline.core.params import load_params
from pipeline.core.paths import truth_file
from pipeline.mri.dedupe import build_index
from pipeline.mri.fingerprint import upright_views
from pipeline.mri.truth import score_against_truth, subjects_across_splits
from pipeline.tables.index import read_index, write_index
from pipeline.tables.split import assign_splits
from tests.other_archive import Setting, write_other_archive

SUBJECTS = {"NonDemented": 6, "VeryMildDemented": 5, "MildDemented": 4, "ModerateDemented": 2}
SETTINGS = {
    "default: spacing 1-5 mm, warp 3 mm, tilt 8, bias 0.25, noise 0.03": Setting(),
    "thin slices: spacing 1-2 mm": Setting(spacing=(1.0, 2.0)),
    "thick slices: spacing 4-5 mm": Setting(spacing=(4.0, 5.0)),
    "strong warp 6 mm, tilt 15": Setting(warp=6.0, tilt=15.0),
    "noisy: noise 0.08, bias 0.5": Setting(noise=0.08, bias=0.5),
    "mild: warp 1 mm, tilt 3, noise 0.01, bias 0.1": Setting(warp=1.0, tilt=3.0, noise=0.01, bias=0.1),
}


def run(root: Path, setting: Setting, seed: int) -> dict:
    params = load_params(Path("params.yaml"))
    settings = params.dedupe.model_copy(update={"slices_per_subject": 32})
    truth = write_other_archive(root, SUBJECTS, 32, 20, seed, setting, shape=(104, 88), pixel=2.0)
    rows, report = build_index(root, params.data.classes, settings)
    write_index(root.parent / "index.csv", rows)
    split = assign_splits(read_index(root.parent / "index.csv"), params.data.classes, params.split.ratios, params.seed,
                          params.split.copies_in_train)
    scores = score_against_truth(rows, truth_file(root))
    where = dict(zip(split.rows["path"], split.rows["split"]))
    originals = split.rows[split.rows["kind"] == "original"]
    views = upright_views(root, originals["path"].tolist())
    found = (views, originals["path"].tolist(), originals["label"].tolist(), originals["subject"].tolist(),
             originals["split"].tolist())
    check, cut = straddling_images(*found), cut_subjects(*found)
    weak = np.sum([list(rule.get("weak_evidence", {}).values()) for rule in report["subject_rules"].values()], axis=0)
    return {"recovered": scores["true_subjects_recovered"], "found": scores["found_subjects"],
            "split": scores["true_subjects_split"],
            "in_two_splits": subjects_across_splits(where, truth_file(root))["true_subjects_in_several_splits"],
            "weak": "/".join(str(int(count)) for count in weak), "orphans": scores["orphan_rate"],
            "audit": f"{check['flagged']} (bound {check['bound']})",
            "cut": f"{cut['cut']} (highest {cut['highest_score']})", **cut_check_on_truth(root, truth, seed)}


def cut_check_on_truth(root: Path, truth: list, seed: int) -> dict:
    """The cut-subject check on the true subjects: its highest score over all their pairs, and the cuts it catches."""
    originals = [row for row in truth if row.kind == "original"]
    paths, labels = [row.path for row in originals], [row.label for row in originals]
    subjects = np.array([row.subject for row in originals])
    views = upright_views(root, paths)
    honest = cut_subjects(views, paths, labels, subjects.tolist(), subjects.tolist())
    position = pd.Series(subjects).groupby(subjects).cumcount().to_numpy()  # slice order within a subject
    rng, caught = np.random.default_rng(seed), 0
    for subject in sorted(set(subjects)):
        groups = np.where((subjects == subject) & (position >= rng.integers(4, np.sum(subjects == subject) - 3)),
                          "cut", subjects)
        report = cut_subjects(views, paths, labels, groups.tolist(), np.where(groups == "cut", "test", "train").tolist())
        caught += any("cut" in pair["subjects"] for pair in report["examples"])
    return {"honest_highest": honest["highest_score"], "honest_past": honest["cut"], "caught": caught}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/subjects-sweep"))
    args = parser.parse_args()
    print("| setting | seed | recovered of 17 | found groups | true subjects over several groups | "
          "true subjects in two splits | "
          "weak decisions (reconnected / kept on a thin margin / merged to whole / merged as ambiguous) | "
          "copy orphans | audit pixel flags | cut-subject pairs | true-subject pairs past the bound (highest) | "
          "single cuts caught of 17 |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|---|---|---:|")
    for name, setting in SETTINGS.items():
        for seed in args.seeds:
            root = args.workdir / f"{abs(hash(name)) % 10_000}-{seed}" / "archive"
            shutil.rmtree(root.parent, ignore_errors=True)
            r = run(root, setting, seed)
            print(f"| {name} | {seed} | {r['recovered']} | {r['found']} | {r['split']} | {r['in_two_splits']} | "
                  f"{r['weak']} | {r['orphans']} | {r['audit']} | {r['cut']} | {r['honest_past']} "
                  f"({r['honest_highest']}) | {r['caught']} |", flush=True)
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
