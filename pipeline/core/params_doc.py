"""The parameters reference, docs/parameters.md, written from params.yaml and params.py: `python -m
pipeline.core.params_doc`. Each key's meaning is its comment in params.yaml (the one place it is written), its
demo value the value there, and what it allows the text a wrong value's error gives (params.py's validation).
tests/test_docs.py fails, naming this command, when the committed page and these sources part ways."""

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.params import _allowed, _Loader, _schema
from pipeline.core.registry import BACKBONES

PAGE = Path("docs/parameters.md")
COMMAND = "python -m pipeline.core.params_doc"


@dataclass(frozen=True)
class Entry:
    """One key of params.yaml as the reference shows it."""

    key: str  # dotted, as `dvc exp run -S` sets it
    value: str  # as params.yaml writes it (the demo's); empty for a section
    allowed: str
    meaning: str


def entries(text: str) -> list[Entry]:
    """Every key of a params.yaml text, in file order, with its comment; a key without one stops here."""
    lines = text.splitlines()
    found: list[Entry] = []

    def walk(node: yaml.MappingNode, prefix: tuple[str, ...]) -> None:
        for key_node, value_node in node.value:
            key = (*prefix, key_node.value)
            section = isinstance(value_node, yaml.MappingNode) and not value_node.flow_style
            value = "" if section else text[value_node.start_mark.index:value_node.end_mark.index]
            meaning = _comment(lines, key_node, value_node)
            if not meaning and prefix == ("tune",) and key[-1] in BACKBONES:
                meaning = f"{key[-1]}'s own values of the keys `tune` lists ({{}}: none)"
            if not meaning:
                raise PipelineError(f"params.yaml: {'.'.join(key)} has no comment; add one saying what it does "
                                    f"(docs/parameters.md is written from them by `{COMMAND}`)")
            found.append(Entry(".".join(key), value, allowed(key), meaning))
            if section:
                walk(value_node, key)

    root = yaml.compose(text, Loader=_Loader)
    walk(root, ())
    return found


def _comment(lines: list[str], key_node: yaml.Node, value_node: yaml.Node) -> str:
    """The comment lines right above a key (at its indent) and the comment after it, with that comment's
    continuation lines (comment-only lines whose `#` stands in the same column)."""
    row, indent = key_node.start_mark.line, key_node.start_mark.column
    above = []
    for line in reversed(lines[:row]):
        if not line.startswith(" " * indent + "#"):
            break
        above.insert(0, line.strip()[1:].strip())
    if len(above) == row:  # the file's own heading, not this key's
        above = []
    same_line = value_node.end_mark.line == row and not (isinstance(value_node, yaml.MappingNode)
                                                         and not value_node.flow_style)
    start = value_node.end_mark.column if same_line else key_node.end_mark.column + 1
    match = re.search(r"\s#", lines[row][start:]) if start < len(lines[row]) else None
    after = []
    if match:
        column = start + match.start() + 1
        after.append(lines[row][column + 1:].strip())
        for line in lines[row + 1:]:
            if len(line) <= column or line[column] != "#" or line[:column].strip():
                break
            after.append(line[column + 1:].strip())
    return " ".join(above + after)


def allowed(key: tuple[str, ...]) -> str:
    """What a key allows, in the words a wrong value's error uses."""
    info, schema = _schema(key)
    return _kind(info, schema)


def _kind(info: FieldInfo, schema: object) -> str:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        kinds = {name: _kind(field, field.annotation) for name, field in schema.model_fields.items()}
        if len(set(kinds.values())) == 1 and len(kinds) > 1:
            return f"a mapping of {', '.join(kinds)}, each {next(iter(kinds.values()))}"
        return "a mapping of " + ", ".join(kinds)
    if get_origin(schema) is dict:
        value = get_args(schema)[1]
        return f"a mapping of names to {_kind(FieldInfo.from_annotation(value), value)}"
    if get_origin(schema) in (Union, types.UnionType) and not info.description:
        return " or ".join("null" if arg is type(None) else _kind(FieldInfo.from_annotation(arg), arg)
                           for arg in get_args(schema))
    return _allowed(info)


def reference(text: str) -> str:
    """docs/parameters.md for a params.yaml text."""
    out = ["# Parameters", "",
           f"<!-- Written by `{COMMAND}` from params.yaml's comments and params.py's validation: edit those. -->", "",
           "`params.yaml` drives everything; a wrong value fails at load time naming the key, the value and what is",
           "allowed, and unknown keys are refused. The committed file is the demo (small images, `weights: none`),",
           "with comments saying what to change for real data. Set any key for one experiment with",
           "`dvc exp run -S key=value` (a dotted key for a nested one: `-S data.source=folder`).", ""]
    section = None
    for entry in entries(text):
        heading = "Top level" if "." not in entry.key and entry.value else entry.key.split(".")[0]
        if heading != section:
            section = heading
            out += ["", f"## {heading}", "", "| key | demo value | allowed | meaning |", "|---|---|---|---|"][
                out[-1] == "":]
        value = f"`{entry.value}`" if entry.value else "(section)"
        out.append(f"| `{entry.key}` | {_cell(value)} | {_cell(entry.allowed)} | {_cell(entry.meaning)} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    """Text as one table cell: pipes escaped, and `<` outside code spans, so `<name>` is not read as HTML."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if index % 2 else part.replace("<", "&lt;") for index, part in enumerate(parts))


def main() -> None:
    """Write docs/parameters.md from params.yaml."""
    try:
        PAGE.write_text(reference(paths.PARAMS.read_text(encoding="utf-8")), encoding="utf-8")
    except PipelineError as error:
        sys.exit(str(error))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
