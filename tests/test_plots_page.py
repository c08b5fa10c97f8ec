"""`dvc plots show` draws every plot offline: its page, rendered in headless Chromium (Debian's package)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from dvc.repo.plots import infer_data_sources
from dvc_render.base import Renderer

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no host resolves: the page must need no network
    "--virtual-time-budget=60000",
)
REMOTE_LOAD = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)
PAGE_DIV = re.compile(r'<div id\s*=\s*"([^"]+)"')
DRAWN_MARK = re.compile(r'<g class="mark-(\w+) role-mark[^"]*"[^>]*><(?:path|text|line|rect|image)\b')


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def html_id(plot_id: str) -> str:
    """The id DVC gives a plot's div."""
    return Renderer.remove_special_chars(plot_id)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's files as a fresh clone has them, after `dvc repro plots_page` and `dvc plots show`."""
    project = tmp_path_factory.mktemp("project")
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], ROOT).split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, project / name)
    run(["git", "init", "-q"], project)
    run(["dvc", "repro", "plots_page"], project)
    run(["dvc", "plots", "show"], project)
    return project


@pytest.fixture(scope="module")
def dom(project, tmp_path_factory) -> str:
    """The page's DOM once Chromium has run its scripts."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium: apt-get install chromium")
    profile = tmp_path_factory.mktemp("chromium")
    page = (project / "dvc_plots" / "index.html").as_uri()
    return run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page], project)


@pytest.fixture(scope="module")
def drawn(project, dom) -> dict[str, set[str]]:
    """Each plot div of the page, with the kinds of marks it drew (`img` for an image plot whose file is there)."""
    starts = sorted((dom.find(f'<div id="{div}"'), div) for div in PAGE_DIV.findall(page_html(project)))
    assert all(start >= 0 for start, _ in starts), "Chromium's DOM lacks plot divs of the page"
    ends = [start for start, _ in starts[1:]] + [len(dom)]
    drawn = {}
    for (start, div), end in zip(starts, ends):
        part = dom[start:end]
        images = [src for src in re.findall(r'<img src="([^"]+)"', part) if (project / "dvc_plots" / src).is_file()]
        drawn[div] = set(DRAWN_MARK.findall(part)) | ({"img"} if images else set())
    return drawn


def page_html(project: Path) -> str:
    """The page that `dvc plots show` wrote."""
    return (project / "dvc_plots" / "index.html").read_text()


@pytest.fixture(scope="module")
def declared(project) -> dict[str, list[str]]:
    """Every plot that dvc.yaml declares, by id, with the files its data comes from."""
    with Repo(str(project)) as repo:
        collected = next(repo.plots.collect())["workspace"]["definitions"]["data"]
    plots = [plot for file in collected.values() for plot in file["data"].items()]
    return {plot: infer_data_sources(plot, config) for plot, config in plots}


def divs_of(plot_id: str, drawn: dict[str, set[str]]) -> dict[str, set[str]]:
    """The divs of one declared plot: a directory of plot files gives one per file."""
    prefix = html_id(plot_id)
    return {div: marks for div, marks in drawn.items() if div == prefix or div.startswith(prefix + "_")}


def test_page_loads_nothing_from_the_network(project):
    html = page_html(project)
    assert "vegaEmbed" in html and not REMOTE_LOAD.search(html), "the page should carry its own scripts"


def test_no_plot_fails(dom):
    errors = re.findall(r'class="vega-error">([^<]*)', dom)
    assert not errors, errors


def test_every_declared_plot_draws(declared, drawn):
    assert drawn, "the page has no plot"
    blank = [div for div, marks in drawn.items() if not marks]
    assert not blank, f"plots that drew nothing: {blank}"
    missing = [plot for plot in declared if not divs_of(plot, drawn)]
    assert not missing, f"declared plots missing from the page: {missing}"


@pytest.mark.parametrize(
    ("plot", "mark"),
    [
        ("plots/eval/{}/confusion.csv", "rect"),
        ("plots/eval/{}/roc.csv", "line"),
    ],
)
def test_each_backbone_has_its_plot(project, drawn, plot, mark):
    backbones = yaml.safe_load((project / "params.yaml").read_text())["backbones"]
    lacking = [b for b in backbones if not any(mark in marks for marks in divs_of(plot.format(b), drawn).values())]
    assert not lacking, f"{plot} has no {mark} drawn for {lacking}"


def test_training_curves_overlay_every_backbone_on_one_chart_per_metric(project, declared, drawn):
    backbones = yaml.safe_load((project / "params.yaml").read_text())["backbones"]
    training = {plot: sources for plot, sources in declared.items() if plot.startswith(("Head,", "Fine-tuning,"))}
    assert len(training) == 8
    for plot, sources in training.items():
        stage = "train" if plot.startswith("Head,") else "finetune"
        assert sorted(source.split("/")[2] for source in sources) == sorted(backbones), plot
        assert all(source.startswith(f"dvclive/{stage}/") for source in sources), plot
        assert any("line" in marks for marks in divs_of(plot, drawn).values()), f"{plot} drew no line"


def test_comparison_charts_draw(declared, drawn):
    compare = [plot for plot, sources in declared.items() if any(s.startswith("plots/compare/") for s in sources)]
    if not compare:
        pytest.skip("dvc.yaml declares no plot of plots/compare/ yet")
    lacking = [plot for plot in compare if not any(divs_of(plot, drawn).values())]
    assert not lacking, f"comparison charts not drawn: {lacking}"
