"""The comparison as the page shows it: reports/comparison.md rendered, its warnings apart, and `dvc exp show`."""

import json
import subprocess
import sys
from pathlib import Path

from markdown_it import MarkdownIt

from pipeline.core import paths

WARNING = "> **"  # how reports/comparison.md starts each warning line
EXP_SHOW_TIMEOUT_S = 30
EXP_PARAMS = ("seed", "lr", "epochs", "fine_tune_lr", "fine_tune_epochs", "weights", "image_size")
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in the report is shown as text


def report(root: Path) -> dict:
    """The report's warnings (HTML, one each) and the whole report as HTML; a note instead when it is missing."""
    try:
        text = (root / paths.REPORT).read_text(encoding="utf-8")
    except OSError:
        return {"warnings": [], "html": "", "note": f"{paths.REPORT} not written yet: dvc repro compare"}
    warnings = [MARKDOWN.renderInline(line.removeprefix(">").strip())
                for line in text.splitlines() if line.startswith(WARNING)]
    return {"warnings": warnings, "html": MARKDOWN.render(text), "note": ""}


def charts(root: Path) -> dict[str, Path]:
    """The comparison's charts by file name: the only files the page's chart route serves."""
    return {path.name: path for path in sorted((root / paths.COMPARE_PLOTS).glob("*.png"))}


def experiments(root: Path, backbones: tuple[str, ...]) -> dict:
    """`dvc exp show --json` as rows (name, rev, a few params, each backbone's test balanced accuracy), or a note."""
    try:
        done = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=root, capture_output=True, text=True,
                              timeout=EXP_SHOW_TIMEOUT_S)
        entries = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        entries = None
    if not isinstance(entries, list):
        return {"rows": [], "columns": [], "note": "dvc exp show failed or timed out; no experiments to show"}
    revisions = [revision for entry in entries
                 for revision in [entry, *(rev for exp in entry.get("experiments") or [] for rev in exp.get("revs", []))]]
    rows = [experiment_row(revision, backbones) for revision in revisions if revision.get("data")]
    return {"rows": rows, "columns": [*EXP_PARAMS, *backbones], "note": ""}


def experiment_row(revision: dict, backbones: tuple[str, ...]) -> dict:
    """One experiment: its name, rev, params and each backbone's val balanced accuracy (None where absent): experiments
    are compared on val, never on test."""
    data = revision["data"]
    params = ((data.get("params") or {}).get(str(paths.PARAMS)) or {}).get("data") or {}
    metrics = data.get("metrics") or {}
    values = {key: params.get(key) for key in EXP_PARAMS}
    for backbone in backbones:
        scores = ((metrics.get(str(paths.eval_metrics(backbone))) or {}).get("data") or {}).get("val") or {}
        values[backbone] = scores.get("balanced_accuracy")
    return {"name": revision.get("name") or str(revision.get("rev", ""))[:7], "rev": revision.get("rev"),
            "values": values}
