"""Subjects from pixels on archives from `tests/other_archive.py`, a generator unlike `synth`, over its settings.

    python benchmarks/subjects_sweep.py [--seeds 1 2] [--workdir /tmp/subjects-sweep]

Per setting and seed: an archive of 17 subjects of 32 slices (6, 5, 4, 2 per class) with opaque
names and 20 Keras-like copies per class, at 2 mm per pixel (104 x 88); `build_index` with the
committed params (dedupe.slices_per_subject 32), the split of the committed params, then: true
subjects recovered as groups of their own, true subjects over several found groups, true
subjects in several splits, links decided on weak evidence, and the audit's pixel check on the
split. Prints a markdown table.
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.analysis.straddle import straddling_images
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
    write_other_archive(root, SUBJECTS, 32, 20, seed, setting, shape=(104, 88), pixel=2.0)
    rows, report = build_index(root, params.data.classes, settings)
    write_index(root.parent / "index.csv", rows)
    split = assign_splits(read_index(root.parent / "index.csv"), params.data.classes, params.split.ratios, params.seed,
                          params.split.copies_in_train)
    scores = score_against_truth(rows, truth_file(root))
    where = dict(zip(split.rows["path"], split.rows["split"]))
    originals = split.rows[split.rows["kind"] == "original"]
    views = upright_views(root, originals["path"].tolist())
    check = straddling_images(views, originals["path"].tolist(), originals["label"].tolist(),
                              originals["subject"].tolist(), originals["split"].tolist())
    weak = np.sum([list(rule.get("weak_evidence", {}).values()) for rule in report["subject_rules"].values()], axis=0)
    return {"recovered": scores["true_subjects_recovered"], "found": scores["found_subjects"],
            "split": scores["true_subjects_split"],
            "in_two_splits": subjects_across_splits(where, truth_file(root))["true_subjects_in_several_splits"],
            "weak": "/".join(str(int(count)) for count in weak), "orphans": scores["orphan_rate"],
            "audit": f"{check['flagged']} (bound {check['bound']})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/subjects-sweep"))
    args = parser.parse_args()
    print("| setting | seed | recovered of 17 | found groups | true subjects over several groups | "
          "true subjects in two splits | "
          "weak links (kept though apart / thin cuts / merged to whole / merged as ambiguous) | "
          "copy orphans | audit pixel flags |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    for name, setting in SETTINGS.items():
        for seed in args.seeds:
            root = args.workdir / f"{abs(hash(name)) % 10_000}-{seed}" / "archive"
            shutil.rmtree(root.parent, ignore_errors=True)
            r = run(root, setting, seed)
            print(f"| {name} | {seed} | {r['recovered']} | {r['found']} | {r['split']} | {r['in_two_splits']} | "
                  f"{r['weak']} | {r['orphans']} | {r['audit']} |", flush=True)
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
