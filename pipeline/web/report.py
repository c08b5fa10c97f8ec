"""The comparison as the page shows it: reports/comparison.md rendered, its warnings apart, and `dvc exp show`."""

import asyncio
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from markdown_it import MarkdownIt

from pipeline.core import paths
from pipeline.web.live import stamps

WARNING = "> **"  # how reports/comparison.md starts each warning line
EXP_SHOW_TIMEOUT_S = 30
EXP_PARAMS = ("seed", "lr", "epochs", "fine_tune_lr", "fine_tune_epochs", "weights", "image_size")
GIT_HASH = re.compile(r"[0-9a-f]{40}")
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in the report is shown as text


def report(root: Path) -> dict:
    """The report's warnings (HTML, one each) and the whole report as HTML; a note instead when it is missing."""
    try:
        text = (root / paths.REPORT).read_text(encoding="utf-8")
    except OSError:
        return {"warnings": [], "html": "", "note": f"{paths.REPORT} not written yet: dvc repro compare"}
    lines = text.splitlines()
    warnings = [MARKDOWN.renderInline(line.removeprefix(">").strip()) for line in lines if line.startswith(WARNING)]
    rest = "\n".join(line for line in lines if not line.startswith(WARNING))  # the page shows the warnings once
    return {"warnings": warnings, "html": MARKDOWN.render(rest), "note": ""}


def charts(root: Path) -> dict[str, Path]:
    """The comparison's charts by file name: the only files the page's chart route serves."""
    return {path.name: path for path in sorted((root / paths.COMPARE_PLOTS).glob("*.png"))}


def explain_grids(root: Path, backbones: tuple[str, ...]) -> dict[str, Path]:
    """Each backbone's Grad-CAM grid (explain@<backbone>) that exists: the only files the page's grid route serves."""
    grids = {name: root / paths.explain_grid(name) for name in backbones}
    return {name: path for name, path in grids.items() if path.is_file()}


def experiments(root: Path, backbones: tuple[str, ...]) -> dict:
    """`dvc exp show --json` as rows (name, rev, a few params, each backbone's val balanced accuracy), or a note."""
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
    rev = str(revision.get("rev", ""))
    return {"name": revision.get("name") or (rev[:7] if GIT_HASH.fullmatch(rev) else rev), "rev": revision.get("rev"),
            "values": values}


def git_folders(root: Path) -> tuple[Path, Path]:
    """The work tree's git folder (HEAD) and the repository's common one (refs), also for a linked worktree."""
    git = root / ".git"
    if git.is_file():  # a linked worktree: "gitdir: <path>"
        git = root / git.read_text().removeprefix("gitdir:").strip()
    try:
        return git, git / (git / "commondir").read_text().strip()
    except OSError:
        return git, git


def fingerprint(root: Path) -> tuple:
    """Each file `dvc exp show` depends on, with its mtime and size: git's HEAD and refs (branches, experiments'
    refs/exps, packed-refs), dvc.lock and params.yaml. The same fingerprint, the same experiments."""
    git, common = git_folders(root)
    files = [git / "HEAD", common / "packed-refs", root / paths.LOCK, root / paths.PARAMS,
             *sorted((common / "refs").rglob("*"))]
    return stamps(files)


class Experiments:
    """`experiments`, rerun only when its fingerprint changes, by one `dvc` process at a time on a thread of its own
    (never the threads that decode uploads or run the models)."""

    def __init__(self, root: Path, backbones: tuple[str, ...]):
        self.root, self.backbones = root, backbones
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="dvc-exp-show")
        self.seen: tuple | None = None
        self.table: dict = {}

    def current(self) -> dict:
        """The experiments as of now; runs on self.thread only, so calls queue and the first reruns dvc."""
        seen = fingerprint(self.root)
        if seen != self.seen:
            self.table, self.seen = experiments(self.root, self.backbones), seen
        return self.table

    async def get(self) -> dict:
        """`current`, awaited without holding the event loop or a thread of the default pool."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, self.current)

    def close(self) -> None:
        """Let the thread end after its current call."""
        self.thread.shutdown(wait=False, cancel_futures=True)
