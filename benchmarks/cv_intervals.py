"""The subject-bootstrap intervals of one split against k folds pooled, per backbone: issue 30's "narrower?".

    python benchmarks/cv_intervals.py . ../cv5   # a project run with split.folds: 1, one run with k > 1

Both projects must have run `dvc repro` (their `metrics/summary.json` and evaluate's predictions).
Prints two markdown tables. The first: each backbone's test balanced accuracy, QWK (ordinal
classes), macro F1 and macro ROC AUC with the 95% intervals `compare` reported, and the interval's
width, one split against the pooled folds. The second compares like with like: the subject
bootstrap cannot vary a class with one test subject (`ci95_single_subject_classes`), so a split
whose test holds one subject of a class reports an interval that leaves that class's uncertainty
out. It scores both runs on the test images of the classes with at least two test subjects in the
one split only: balanced accuracy over those classes (their mean recall, every class's probability
still counting), with the same bootstrap (`evaluate.bootstrap` resamples, `seed`).
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from pipeline.analysis.metrics import prediction_metrics, single_subject_classes, subject_bootstrap  # noqa: E402
from pipeline.core import paths  # noqa: E402

METRICS = ("balanced_accuracy", "qwk", "macro_f1", "roc_auc_ovr")


def project_params(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def pooled_predictions(project: Path, backbone: str, folds: int) -> pd.DataFrame:
    """A backbone's test predictions over every fold (the one split's when folds is 1)."""
    return pd.concat([pd.read_csv(project / paths.predictions(backbone, fold)) for fold in range(folds)],
                     ignore_index=True)


def interval_text(low: float, high: float, score: float) -> str:
    return f"{score:.3f} [{low:.3f}, {high:.3f}] ({high - low:.3f})"


def reported_rows(single: dict, folded: dict, backbones: list[str]) -> list[str]:
    """One row per backbone and metric: the score, interval and width that `compare` reported in each run."""
    rows = []
    for name in backbones:
        for metric in METRICS:
            one, pooled = single["models"][name], folded["models"][name]
            if one.get(metric) is None:
                continue
            widths = [record[f"{metric}_high"] - record[f"{metric}_low"] for record in (one, pooled)]
            texts = [interval_text(record[f"{metric}_low"], record[f"{metric}_high"], record[metric])
                     for record in (one, pooled)]
            rows.append(f"| {name} | {metric} | {texts[0]} | {texts[1]} | {'yes' if widths[1] < widths[0] else 'no'} |")
    return rows


def balanced_accuracy_on(frame: pd.DataFrame, classes: list[str], kept: list[int], resamples: int,
                         seed: int) -> str:
    """Balanced accuracy over the `kept` classes' test images, with its subject-bootstrap interval."""
    rows = frame[frame["label_index"].isin(kept)]
    labels = rows["label_index"].to_numpy()
    probabilities = rows[[f"prob_{name}" for name in classes]].to_numpy()
    score = prediction_metrics(labels, probabilities.argmax(axis=1), len(classes), ordinal=False)["balanced_accuracy"]
    intervals, _ = subject_bootstrap(labels, probabilities, rows["subject"].to_numpy(), resamples, seed,
                                     ordinal=False, metrics=("balanced_accuracy",))
    return interval_text(intervals["balanced_accuracy"]["low"], intervals["balanced_accuracy"]["high"], score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("single", type=Path, help="the project run with split.folds: 1")
    parser.add_argument("folded", type=Path, help="the project run with split.folds: k > 1")
    args = parser.parse_args()
    params = project_params(args.single)
    folds = project_params(args.folded)["split"]["folds"]
    summaries = [json.loads((project / paths.SUMMARY).read_text()) for project in (args.single, args.folded)]
    backbones, classes = params["backbones"], summaries[0]["classes"]
    print(f"| backbone | metric | one split: score [95%] (width) | {folds} folds pooled | narrower |")
    print("|---|---|---|---|---|")
    print("\n".join(reported_rows(*summaries, backbones)))
    one_split = {name: pooled_predictions(args.single, name, 1) for name in backbones}
    first = one_split[backbones[0]]
    single = single_subject_classes(first["label_index"].to_numpy(), first["subject"].to_numpy(), tuple(classes))
    kept = [index for index, name in enumerate(classes) if name not in single]
    resamples, seed = params["evaluate"]["bootstrap"], params["seed"]
    print(f"\nBalanced accuracy over {', '.join(classes[index] for index in kept)} only (left out, one test subject"
          f" in the one split: {', '.join(single) or 'none'}):\n")
    print(f"| backbone | one split (width) | {folds} folds pooled (width) |")
    print("|---|---|---|")
    for name in backbones:
        scored = [balanced_accuracy_on(frame, classes, kept, resamples, seed)
                  for frame in (one_split[name], pooled_predictions(args.folded, name, folds))]
        print(f"| {name} | {scored[0]} | {scored[1]} |")


if __name__ == "__main__":
    main()
