"""Atomic writes: an output appears whole under its name or not at all."""

import pytest

from pipeline.files import replacing, write_text


def test_a_finished_write_replaces_the_file(tmp_path):
    path = tmp_path / "models" / "model.keras"
    write_text(path, "old")
    with replacing(path) as partial:
        assert partial.parent == path.parent and partial.name.endswith(".keras") and partial != path
        partial.write_text("new")
    assert path.read_text() == "new" and sorted(tmp_path.rglob("*.keras")) == [path]


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial(tmp_path):
    path = tmp_path / "train.npz"
    write_text(path, "old")
    with pytest.raises(KeyboardInterrupt), replacing(path) as partial:
        partial.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
