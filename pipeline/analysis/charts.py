"""The comparison's PNG charts, drawn the same byte for byte from the same table (no timestamps, no version tag)."""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.core.files import save_figure

METADATA = {"Software": None}  # PNG text chunks: matplotlib would write its version here
DPI = 100
KIND_COLOURS = {"backbone": "tab:blue", "ensemble": "tab:orange", "baseline": "tab:grey"}


def draw_all(table: pd.DataFrame, curves: dict[str, dict], summary: dict, plots_dir: Path) -> dict[str, Path]:
    """Draw every chart under plots_dir; return their paths by name."""
    chance = 1 / len(summary["classes"])
    paths = {name: plots_dir / f"{name}.png" for name in
             ("balanced_accuracy", "accuracy_latency", "accuracy_size", "any_dementia_roc")}
    save(interval_chart(table, chance), paths["balanced_accuracy"])
    save(scatter_chart(table, "latency_ms", "CPU latency, ms per image (batch 1, log scale)", chance),
         paths["accuracy_latency"])
    save(scatter_chart(table, "size_mb", "model file size, MB (log scale)", chance), paths["accuracy_size"])
    save(roc_chart(curves, summary["any_dementia"]), paths["any_dementia_roc"])
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


def roc_chart(curves: dict[str, dict], any_dementia: dict) -> Figure:
    """"Any dementia vs none" ROC curve per model, each with its operating point at the sensitivity target."""
    figure = Figure(figsize=(6, 6), layout="constrained")
    axes = figure.add_subplot()
    for name, curve in curves.items():
        point = any_dementia["models"][name]
        line, = axes.plot(curve["fpr"], curve["tpr"], linewidth=1.2, label=f"{name} (AUC {point['auc']:.3f})")
        axes.plot(1 - point["specificity"], point["sensitivity"], "o", color=line.get_color())
    axes.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1)
    axes.axhline(any_dementia["sensitivity_target"], color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_title(f"Any dementia vs none; dots: first threshold reaching sensitivity "
                   f"{any_dementia['sensitivity_target']:.2f}", fontsize=9)
    axes.legend(loc="lower right", fontsize=7)
    return figure
