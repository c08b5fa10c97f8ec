"""The one error type a stage raises for a problem the user can fix, and the check that a stage's inputs are fresh."""

import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SHORT = reprlib.Repr()
_SHORT.maxlist, _SHORT.maxstring = 6, 60  # a list of 102 class names stays one short line


class PipelineError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""


def require_file(path: Path, stage: str) -> None:
    """Stop when a file another stage writes is missing, saying which stage makes it."""
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro {stage}` first")


def check_inputs(path: Path, recorded: Mapping[str, Any], expected: Mapping[str, Any], stage: str) -> None:
    """Stop when a file a stage reads records other values than `expected` (params now, or what the file it was
    made from says): the file is stale, so say which keys differ and which stage to run first."""
    stale = [f"{key} {_SHORT.repr(_plain(recorded.get(key)))}, not {_SHORT.repr(_plain(value))}"
             for key, value in expected.items() if _plain(recorded.get(key)) != _plain(value)]
    if stale:
        raise PipelineError(f"{path} was made for {'; '.join(stale)}: it is stale; run `dvc repro {stage}` first")


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON reads them back."""
    return list(value) if isinstance(value, tuple) else value
