"""The documentation: the parameters reference is params.yaml's own, the site builds strictly, and the README's
commands exist (make targets, `python -m pipeline` commands, params keys set with -S)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from pipeline.__main__ import COMMANDS
from pipeline.core import params_doc
from pipeline.core.errors import PipelineError
from pipeline.core.params import Params, _schema

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _keys(mapping: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a nested mapping, parents included."""
    keys = []
    for key, value in mapping.items():
        keys.append(prefix + str(key))
        if isinstance(value, dict):
            keys += _keys(value, f"{prefix}{key}.")
    return keys


def _reference_rows() -> dict[str, str]:
    """docs/parameters.md's rows: key -> the whole row."""
    page = (ROOT / params_doc.PAGE).read_text(encoding="utf-8")
    return {match.group(1): match.group(0) for match in re.finditer(r"^\| `([^`]+)` \|.*$", page, re.MULTILINE)}


def test_the_reference_is_written_from_params_yaml():
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    committed = (ROOT / params_doc.PAGE).read_text(encoding="utf-8")
    assert committed == params_doc.reference(text), f"docs/parameters.md is stale: run `{params_doc.COMMAND}`"


def test_the_reference_covers_every_key_and_says_what_each_does():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    rows = _reference_rows()
    flow_values = {key for key in rows if "{" in rows[key].split("|")[2]}  # a flow mapping is one row, e.g. ratios
    missing = [key for key in _keys(raw) if key not in rows and not any(key.startswith(f"{flow}.")
                                                                        for flow in flow_values)]
    assert not missing, f"params.yaml keys missing from docs/parameters.md: {missing}"
    for row in rows.values():
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), row


def test_every_model_field_is_in_the_reference():
    rows = _reference_rows()

    def fields(model: type, prefix: str) -> list[str]:
        found = []
        for name, info in model.model_fields.items():
            found.append(prefix + name)
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                found += fields(info.annotation, f"{prefix}{name}.")
        return found

    inline = {key for key, row in rows.items() if "(section)" not in row}  # a flow mapping's keys are in its value
    top = [key for key in fields(Params, "") if not key.startswith("tune.")]
    assert [key for key in top if key not in rows and key.rsplit(".", 1)[0] not in inline] == []


def test_a_key_without_a_comment_is_refused_by_name():
    with pytest.raises(PipelineError, match=r"params.yaml: data.ordinal has no comment"):
        params_doc.entries("data:  # where the images come from\n  ordinal: true\n")


def test_comments_above_after_and_continued_make_the_meaning():
    text = ("# the file's heading\nseed: 42  # split seed\nsynth:  # the demo\n        # read only for the demo\n"
            "  # per class\n  subjects: {a: 1}\n")
    found = {entry.key: entry for entry in params_doc.entries(text)}
    assert found["seed"].meaning == "split seed" and found["seed"].value == "42"
    assert found["synth"].meaning == "the demo read only for the demo" and found["synth"].value == ""
    assert found["synth.subjects"].meaning == "per class" and found["synth.subjects"].value == "{a: 1}"


def test_the_allowed_text_is_what_an_error_says():
    assert params_doc.allowed(("image_size",)) == "an integer from 32 to 1024"
    assert params_doc.allowed(("split", "ratios")) == "a mapping of train, val, test, each a number in (0.0, 1.0]"
    assert params_doc.allowed(("tune", "selected")) == "a mapping of at, metric, experiments or null"


def _build(project: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of a project into `site`."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.fail("mkdocs is not installed: `make test` installs requirements-dev.txt (or pip install -r it)")
    return subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site)], cwd=project, check=False,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    result = _build(ROOT, site)
    assert result.returncode == 0, result.stderr
    pages = [path.stem for path in (ROOT / "docs").glob("*.md")]
    assert all((site / ("" if page == "index" else page) / "index.html").is_file() for page in pages)


def test_a_broken_link_fails_the_build(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project)
    shutil.copy(ROOT / "BENCHMARKS.md", project)
    (project / "docs" / "gpu.md").write_text("# GPU\n\n[the missing page](missing.md)\n", encoding="utf-8")
    result = _build(project, tmp_path / "site")
    assert result.returncode != 0 and "missing.md" in result.stderr


def _readme_commands() -> list[list[str]]:
    """Each command line of the README's code blocks and inline code, as words (comments and prompts cut)."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        joined = block.replace("\\\n", " ")
        lines += [line.split(" #")[0] for line in joined.splitlines()]
    lines += re.findall(r"`((?:make|python -m pipeline|dvc) [^`]+)`", text)
    return [shlex.split(line) for line in lines if line.strip()]


def test_the_readme_commands_exist():
    commands = _readme_commands()
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    makes = {words[1] for words in commands if words[0] == "make" and len(words) > 1}
    pipelines = {words[3] for words in commands if words[:3] == ["python", "-m", "pipeline"]}
    keys = {words[index + 1].split("=")[0].lstrip("+") for words in commands for index, word in enumerate(words)
            if word == "-S"}
    assert makes and pipelines and keys  # the patterns still find them
    assert makes <= targets, f"make targets the README names and the Makefile lacks: {makes - targets}"
    assert pipelines <= set(COMMANDS), f"pipeline commands the README names that do not exist: {pipelines}"
    for key in keys:
        try:
            _schema(tuple(key.split(".")))
        except (KeyError, AttributeError):
            pytest.fail(f"README sets {key} with -S: no such key in params.py")
