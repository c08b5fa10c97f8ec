"""Atomic file writes: a stage's output appears whole under its name, or not at all.

Every output goes through `replacing` (directly or through the helpers below). Keras models
are written through `save_model`, which also makes them the same bytes for the same model.
"""

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def partial_path(path: Path) -> Path:
    """A hidden name beside `path` ending like it (Keras and numpy go by the ending), unique to this process."""
    return path.with_name(f".partial-{os.getpid()}-{path.name}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write to; move it over `path` when the block succeeds, delete it when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_json(path: Path, data) -> None:
    """Write `data` as JSON (indent 2, sorted keys, a final newline) to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, table, **options) -> None:
    """Write a pandas DataFrame as CSV (no index) to `path` atomically; `options` go to `to_csv`."""
    with replacing(path) as partial:
        table.to_csv(partial, index=False, **options)


def save_figure(figure, path: Path, **options) -> None:
    """Save a matplotlib figure to `path` atomically; `options` go to `savefig`."""
    with replacing(path) as partial:
        figure.savefig(partial, **options)


def save_model(model, path: Path) -> None:
    """Save a Keras model to `path` atomically, as the same bytes whenever its config and weights are the same.

    Keras records things that differ between two saves of one model: the time (in
    metadata.json, and as a zip entry's date) and, as the ids of objects that layers share,
    their memory addresses (in config.json). A stage rerun that trained the very same weights
    would still hand DVC a changed file, and every stage after it would rerun. The times are
    dropped and the ids renumbered in order of appearance, which keeps what shares what.
    """
    with replacing(path) as partial:
        model.save(partial)
        _make_reproducible(partial)


def _make_reproducible(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_ids(json.loads(data), {})).encode()
            archive.writestr(zipfile.ZipInfo(info.filename), data, compress_type=info.compress_type)


def _renumber_shared_ids(config, numbers: dict):
    """`config` with each distinct "shared_object_id" replaced by its rank of first appearance."""
    if isinstance(config, list):
        return [_renumber_shared_ids(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    return {key: numbers.setdefault(value, len(numbers)) if key == "shared_object_id"
            else _renumber_shared_ids(value, numbers) for key, value in config.items()}
