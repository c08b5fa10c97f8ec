"""How often the subject bootstrap's 95% interval of balanced accuracy holds the true balanced accuracy (its coverage),
expanded percentiles (what evaluate and compare report) against plain 2.5% and 97.5% percentiles.

    PYTHONPATH=. python benchmarks/interval_coverage.py [--draws 2000] [--seed 2026]

Each draw is one simulated 4-class test split from tests/correlated_predictions.py (subjects of 32 slices, right or
wrong together through a shared difficulty and the model's own luck on the subject), scored with 1,000 resamples
drawn within class as `evaluate` draws them. The truth is the model's balanced accuracy over every subject there
could be (`true_balanced_accuracy`). Prints a markdown table: per test size, each method's coverage with its
binomial 95% interval and the mean width.
"""

import argparse
import time

import numpy as np

from benchmarks.paired_tests import share
from pipeline.analysis import metrics
from tests.correlated_predictions import correlated_predictions, true_balanced_accuracy

SUBJECTS_PER_CLASS = (2, 3, 5, 11, 20)  # 2: the demo's single test split (8 subjects); 11: its 46 pooled over folds
CLASSES, RESAMPLES = 4, 1000
METHODS = {"expanded": metrics.expanded_tail, "plain": lambda subjects, strata: 0.025}


def coverage(subjects_per_class: int, tail, draws: int, seed: int) -> tuple[int, float]:
    """How many of `draws` intervals hold the truth, and their mean width, with `tail` as the percentile rule."""
    metrics.expanded_tail = tail
    rng, truth, covered, widths = np.random.default_rng(seed), true_balanced_accuracy(), 0, []
    for draw in range(draws):
        labels, subjects, predicted, _ = correlated_predictions(rng, subjects_per_class=subjects_per_class,
                                                                classes=CLASSES)
        interval = metrics.subject_bootstrap(labels, np.eye(CLASSES)[predicted], subjects, RESAMPLES, draw,
                                             ordinal=False, metrics=("balanced_accuracy",))[0]["balanced_accuracy"]
        covered += interval["low"] <= truth <= interval["high"]
        widths.append(interval["high"] - interval["low"])
    return covered, float(np.mean(widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    start = time.perf_counter()
    print("| test subjects | expanded: coverage [95%] | width | plain: coverage [95%] | width |")
    print("|---|---|---|---|---|")
    for per_class in SUBJECTS_PER_CLASS:
        cells = []
        for tail in METHODS.values():
            covered, width = coverage(per_class, tail, args.draws, args.seed)
            cells += [share(covered, args.draws), f"{width:.3f}"]
        print(f"| {CLASSES * per_class} ({CLASSES} x {per_class}) | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{args.draws} draws per cell, seed {args.seed}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
