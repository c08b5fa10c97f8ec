"""The comparison's PNG charts, drawn the same byte for byte from the same table (no timestamps, no version tag)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure

from pipeline.core.files import save_figure

METADATA = {"Software": None}  # PNG text chunks: matplotlib would write its version here
DPI = 100
KIND_COLOURS = {"backbone": "tab:blue", "ensemble": "tab:orange", "baseline": "tab:grey"}
COUNTED_CLASSES = 20  # up to this many classes the confusion matrix shows each cell's count and names every class
NAMED_TICKS = 20  # beyond, about this many classes are named on each axis


def draw_all(table: pd.DataFrame, summary: dict, plots_dir: Path) -> dict[str, Path]:
    """Draw every chart under plots_dir (the binary ROC only with a binary view); return their paths by name."""
    chance = 1 / len(summary["classes"])
    names = ("balanced_accuracy", "accuracy_latency", "accuracy_size",
             *(("binary_roc",) if "binary" in summary else ()), "confusion")
    paths = {name: plots_dir / f"{name}.png" for name in names}
    save(interval_chart(table, chance), paths["balanced_accuracy"])
    save(scatter_chart(table, "latency_ms", "CPU latency, ms per image (batch 1, log scale)", chance),
         paths["accuracy_latency"])
    save(scatter_chart(table, "size_mb", "model file size, MB (log scale)", chance), paths["accuracy_size"])
    if "binary" in summary:
        save(roc_chart(summary["binary_curves"], summary["binary"]), paths["binary_roc"])
    save(confusion_chart(summary["reference_confusion"], summary["classes"], summary["reference"]["model"]),
         paths["confusion"])
    return paths


def save(figure: Figure, path: Path) -> None:
    """Write the figure as a PNG with fixed metadata."""
    save_figure(figure, path, dpi=DPI, metadata=METADATA)


def colour(kind: str) -> str:
    """The colour of a row's kind ('baseline (... features)' counts as baseline)."""
    return KIND_COLOURS[kind.split(" ")[0]]


def interval_chart(table: pd.DataFrame, chance: float) -> Figure:
    """Balanced accuracy per model, top to bottom in table order, with its 95% subject-bootstrap interval."""
    figure = Figure(figsize=(7, 0.4 * len(table) + 1.4), layout="constrained")
    axes = figure.add_subplot()
    y = np.arange(len(table))[::-1]
    for position, (_, row) in zip(y, table.iterrows()):
        low, high = row["balanced_accuracy_low"], row["balanced_accuracy_high"]
        error = None if pd.isna(low) else [[row["balanced_accuracy"] - low], [high - row["balanced_accuracy"]]]
        axes.errorbar(row["balanced_accuracy"], position, xerr=error, fmt="o", capsize=4, color=colour(row["kind"]))
    axes.axvline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    axes.set_yticks(y, table["model"])
    axes.set_xlim(0, 1)
    axes.set_xlabel("balanced accuracy on the test split (95% subject-bootstrap interval)")
    axes.legend(loc="lower right")
    return figure


def scatter_chart(table: pd.DataFrame, column: str, label: str, chance: float) -> Figure:
    """Balanced accuracy against `column` for the rows that have it, each point named."""
    rows = table[table[column].notna()]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for index, (_, row) in enumerate(rows.iterrows()):
        axes.scatter(row[column], row["balanced_accuracy"], color=colour(row["kind"]))
        axes.annotate(row["model"], (row[column], row["balanced_accuracy"]), textcoords="offset points",
                      xytext=(4, 4 if index % 2 == 0 else -11), fontsize=8)  # alternate sides: neighbours overlap less
    axes.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    axes.set_xscale("log")
    axes.set_ylim(0, 1)
    axes.set_xlabel(label)
    axes.set_ylabel("balanced accuracy")
    axes.legend(loc="upper right")
    return figure


def roc_chart(curves: dict[str, dict], binary: dict) -> Figure:
    """The binary view's ROC curve per model, each with its operating point at the sensitivity target."""
    negative = binary["negative_class"]
    figure = Figure(figsize=(6, 6), layout="constrained")
    axes = figure.add_subplot()
    for name, curve in curves.items():
        point = binary["models"][name]
        line, = axes.plot(curve["fpr"], curve["tpr"], linewidth=1.2, label=f"{name} (AUC {point['auc']:.3f})")
        axes.plot(1 - point["specificity"], point["sensitivity"], "o", color=line.get_color())
    axes.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1)
    axes.axhline(binary["sensitivity_target"], color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_title(f"Any class but {negative} vs {negative}; dots: first threshold reaching sensitivity "
                   f"{binary['sensitivity_target']:.2f}", fontsize=9)
    axes.legend(loc="lower right", fontsize=7)
    return figure


def confusion_chart(matrix: list[list[int]], classes: list[str], model: str) -> Figure:
    """A model's test confusion matrix, shaded by the share of each true class's images.

    Up to `COUNTED_CLASSES` classes each cell shows its count and every class is named; beyond, no
    counts (they would not fit), about `NAMED_TICKS` classes named per axis, each with its index, and
    a square-root colour scale, so that confusions of a few images still show.
    """
    counts = np.array(matrix)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    counted = len(classes) <= COUNTED_CLASSES
    side = 6.5 if counted else 11
    figure = Figure(figsize=(side, side * 0.85), layout="constrained")
    axes = figure.add_subplot()
    scale = Normalize(0, 1) if counted else PowerNorm(0.5, 0, 1)
    image = axes.imshow(share, cmap="Blues", norm=scale, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class's test images")
    ticks = np.arange(0, len(classes), 1 if counted else math.ceil(len(classes) / NAMED_TICKS))
    names = [classes[i] if counted else f"{i}: {classes[i]}" for i in ticks]
    axes.set_xticks(ticks, names, rotation=45 if counted else 90, ha="right" if counted else "center", fontsize=8)
    axes.set_yticks(ticks, names, fontsize=8)
    if counted:
        for (row, column), count in np.ndenumerate(counts):
            axes.text(column, row, str(count), ha="center", va="center", fontsize=9,
                      color="white" if share[row, column] > 0.5 else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{model} on the test split: confusion matrix (rows: true class)", fontsize=9)
    return figure
