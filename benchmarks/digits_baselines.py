"""The baselines stage on a class-folder dataset that no one here made: scikit-learn's copy of the UCI digits.

    PYTHONPATH=. python benchmarks/digits_baselines.py [--work /tmp/digits-baselines]

Writes the 1,797 gray 8x8 digits (10 classes) as PNGs in class folders, each pixel repeated 4 x 4 (32 px a side,
as the reader wants at least 16), then runs the folder source through the pipeline's stages in a scratch project
(`python -m pipeline dedupe`, split, preprocess, weights, features of MobileNetV3Small with random weights, and
baselines with `baselines.pixel_size: 8`, which averages each 4 x 4 block back to the original pixel). Prints each
stage's seconds and markdown tables of the baselines' balanced accuracy, for BENCHMARKS.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("dedupe", "split", "preprocess", "weights MobileNetV3Small", "features MobileNetV3Small", "baselines")
SCALE = 4  # each digit pixel becomes SCALE x SCALE


def write_digits(folder: Path) -> int:
    """The digits as PNGs under folder/<digit>/, 0..16 stretched to 0..255; return how many."""
    digits = load_digits()
    for number, (image, label) in enumerate(zip(digits.images, digits.target)):
        pixels = np.round(image * 255 / 16).astype(np.uint8).repeat(SCALE, axis=0).repeat(SCALE, axis=1)
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / str(label) / f"{number:04d}.png")
    return len(digits.target)


def write_params(project: Path, folder: Path) -> None:
    """The committed params.yaml, pointed at the digits folder (groups: identical images only), 32 px, one backbone,
    both binary bases in the reductions."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw.update(backbones=["MobileNetV3Small"], image_size=4 * 8, weights="none")
    raw["data"].update(source="folder", archive=str(folder), groups="", classes=[], ordinal=False, negative_class="")
    raw["audit"]["backbone"] = raw["baselines"]["backbone"] = "MobileNetV3Small"
    raw["baselines"]["pixel_size"] = 8
    raw["baselines"]["reductions"]["base_models"] = ["linear_svm", "logistic_regression"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def run_stages(project: Path) -> dict[str, float]:
    """Each stage run as `python -m pipeline <stage>` in the project; its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seconds = {}
    for stage in STAGES:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", *stage.split()], cwd=project, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds[stage] = time.perf_counter() - start
    return seconds


def tables(report: dict, split: dict) -> str:
    """Markdown: the split's sizes, each model's CV (mean ± std) and test balanced accuracy on both inputs, the
    reductions."""
    sizes = {name: part["images"]["total"] for name, part in split["splits"].items()}
    lines = [f"split (images): {sizes}; {report['folds']} folds; notes: {report['notes'] or 'none'}\n",
             "| model | pixels 8x8: CV | pixels: test | MobileNetV3Small random features: CV | features: test |",
             "|---|---:|---:|---:|---:|"]
    for name, scores in report["pixels"]["models"].items():
        features = report["models"][name]
        lines.append(f"| {name} | {cell(scores['cv'])} | {scores['test']['balanced_accuracy']:.3f} | "
                     f"{cell(features['cv'])} | {features['test']['balanced_accuracy']:.3f} |")
    lines += ["", "| reduction (on pixels) | binary models | CV | test | fit on train (s) |",
              "|---|---:|---:|---:|---:|"]
    for name, scores in report["reductions"]["models"].items():
        lines.append(f"| {name} | {scores['binary_models']} | {cell(scores['cv'])} | "
                     f"{scores['test']['balanced_accuracy']:.3f} | {scores['fit_seconds']:.2f} |")
    return "\n".join(lines)


def cell(cv: dict) -> str:
    return f"{cv['balanced_accuracy']:.3f} ± {cv['balanced_accuracy_std']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/digits-baselines"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    folder, project = args.work / "digits", args.work / "project"
    project.mkdir(parents=True)
    print(f"{write_digits(folder)} digits written under {folder}")
    write_params(project, folder)
    seconds = run_stages(project)
    print("| stage | seconds |\n|---|---:|")
    print("\n".join(f"| {stage} | {value:.1f} |" for stage, value in seconds.items()))
    report = json.loads((project / "metrics/baselines.json").read_text())
    print(tables(report, json.loads((project / "metrics/split.json").read_text())))


if __name__ == "__main__":
    main()
