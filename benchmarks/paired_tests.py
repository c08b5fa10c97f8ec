"""How often compare's paired tests call a gap real: at no true difference (their level) and at planted gaps (power).

    PYTHONPATH=. python benchmarks/paired_tests.py [--draws 4000] [--seed 2026]

Each draw is one simulated test split from tests/correlated_predictions.py: subjects of 32 slices whose errors
are correlated within the subject (a shared difficulty and each model's own luck on that subject), two models
whose log-odds of a right slice differ by `gap`. Per shape and gap it prints, as a markdown table, the share of
draws in which the subject permutation test (compare's verdict, before Holm) and image-level McNemar reject at
5%, with the binomial 95% interval of each share.
"""

import argparse
import time

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from pipeline.analysis.stats import mcnemar_exact, subject_permutation_test
from tests.correlated_predictions import correlated_predictions

ALPHA = 0.05
SHAPES = {"24 subjects (3 classes x 8)": {"subjects_per_class": 8, "classes": 3},
          "8 subjects (4 classes x 2), the demo's test size": {"subjects_per_class": 2, "classes": 4}}
GAPS = (0.0, 0.5, 1.0, 2.0)


def rates(shape: dict, gap: float, draws: int, seed: int) -> tuple[int, int]:
    """How many of `draws` simulated splits each test rejects at ALPHA: (permutation, McNemar)."""
    rng = np.random.default_rng(seed)
    permutation = mcnemar = 0
    for draw in range(draws):
        labels, subjects, predicted_a, predicted_b = correlated_predictions(rng, gap=gap, **shape)
        permutation += subject_permutation_test(labels, predicted_a, predicted_b, subjects, 1000, draw)["p_value"] < ALPHA
        mcnemar += mcnemar_exact(predicted_a == labels, predicted_b == labels)["p_value"] < ALPHA
    return permutation, mcnemar


def share(hits: int, draws: int) -> str:
    low, high = proportion_confint(hits, draws, alpha=0.05, method="wilson")
    return f"{hits / draws:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    start = time.perf_counter()
    print("| test split | gap (log-odds) | subject permutation rejects | image-level McNemar rejects |")
    print("|---|---:|---|---|")
    for name, shape in SHAPES.items():
        for gap in GAPS:
            permutation, mcnemar = rates(shape, gap, args.draws, args.seed)
            print(f"| {name} | {gap} | {share(permutation, args.draws)} | {share(mcnemar, args.draws)} |")
    print(f"\n{args.draws} draws per row, seed {args.seed}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
