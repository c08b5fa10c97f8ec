"""The subject bootstrap of `evaluate`'s intervals, before (one scikit-learn call per resample) and after (array work
over stratified draws), at Oxford Flowers' test shape and at the demo's.

    python benchmarks/bootstrap_speed.py [--resamples 1000] [--before-resamples 20] [--repeats 3]

Shapes: Oxford Flowers 102's test split (6,149 images of 102 classes, at least 20 of each, each image its own
subject, unordered) and the demo's (256 images, 8 subjects of 32, 4 ordinal classes, subjects per class 3, 2, 2,
1), with made-up informative probabilities. "After" is `subject_bootstrap` of this checkout, timed on --resamples;
"before" is the same function of commit BEFORE (the per-resample loop, loaded from git), timed on --resamples at
the demo's shape and once on --before-resamples at Flowers' (it takes minutes per 1,000; its time grows linearly
with the resamples, so its seconds per 1,000 are scaled and marked so). Times are the medians of --repeats runs;
peak memory is tracemalloc's peak of what the call allocates (numpy arrays included), from one more run of its own.
Prints a markdown table.
"""

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.analysis.metrics import subject_bootstrap

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "31f7829c02683e67c85941fa7582fd6efcde3993"  # the last commit with the per-resample loop


def code_before():
    """pipeline/analysis/metrics.py as of commit BEFORE, loaded as a module of its own."""
    source = subprocess.run(["git", "show", f"{BEFORE}:pipeline/analysis/metrics.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "metrics_before.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("metrics_before", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def predictions(labels: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Probabilities that favour the true class, softmax of noisy logits."""
    logits = np.random.default_rng(seed).normal(size=(len(labels), n_classes)) + 2.5 * np.eye(n_classes)[labels]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def flowers_shape(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """6,149 images of 102 classes (at least 20 each), each its own subject; unordered classes."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.concatenate([np.repeat(np.arange(102), 20), rng.integers(102, size=6149 - 2040)]))
    return labels, predictions(labels, 102, seed), np.arange(len(labels)), False


def demo_shape(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """256 images, 8 subjects of 32, of classes 0, 0, 0, 1, 1, 2, 2, 3; ordinal classes."""
    labels = np.repeat([0, 0, 0, 1, 1, 2, 2, 3], 32)
    return labels, predictions(labels, 4, seed), np.repeat(np.arange(8), 32), True


def timed(call: Callable[[], tuple], repeats: int) -> tuple[float, tuple]:
    """Median wall-clock seconds of `call` over `repeats` runs, and what it returned."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_mb(call: Callable[[], object]) -> float:
    """tracemalloc's peak, in MB, of what `call` allocates."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--before-resamples", type=int, default=20, help="the old loop's resamples at Flowers' shape")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    before = code_before()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"numpy {np.__version__}\n")
    print("| shape | code | resamples timed | seconds for the resamples | seconds per 1,000 | peak MB | used |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, shape, before_resamples in (("Flowers", flowers_shape, args.before_resamples),
                                          ("demo", demo_shape, args.resamples)):
        labels, probabilities, subjects, ordinal = shape()
        for code, function, resamples in (("before", before.subject_bootstrap, before_resamples),
                                          ("after", subject_bootstrap, args.resamples)):
            call = partial(function, labels, probabilities, subjects, resamples, 42, ordinal=ordinal)
            taken, (_, used) = timed(call, 1 if code == "before" and name == "Flowers" else args.repeats)
            scaled = "" if resamples == args.resamples else " (scaled)"
            print(f"| {name} | {code} | {resamples} | {taken:.3f} | {taken * 1000 / resamples:.3f}{scaled} | "
                  f"{peak_mb(call):.1f} | {used} of {resamples} |")
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
