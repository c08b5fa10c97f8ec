"""Atomic writes: an output appears whole under its name or not at all; a model saved twice is the same bytes."""

import json
import re
import time
import zipfile

import keras
import numpy as np
import pytest

from pipeline.core.files import replacing, save_model, write_text


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


def small_model() -> keras.Model:
    keras.backend.clear_session()  # as in a fresh process
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2, activation="softmax")])


def test_a_model_built_and_saved_twice_is_the_same_bytes_and_loads_back(tmp_path):
    first = small_model()
    save_model(first, tmp_path / "first.keras")
    time.sleep(2.1)  # Keras records the time to the second, a zip entry's date to two seconds
    save_model(small_model(), tmp_path / "second.keras")  # other objects: other memory addresses
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.keras", "second.keras"]
    metadata = json.loads(zipfile.ZipFile(tmp_path / "first.keras").read("metadata.json"))
    assert metadata == {"keras_version": keras.__version__}
    loaded = keras.models.load_model(tmp_path / "first.keras")
    for saved, read in zip(first.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(saved, read)
    first.save(tmp_path / "plain.keras")
    plain, ours = (shared_ids(tmp_path / name) for name in ("plain.keras", "first.keras"))
    assert len(plain) == len(ours) > 1 and len(set(zip(plain, ours))) == len(set(plain)) == len(set(ours))


def shared_ids(path) -> list[str]:
    """The "shared_object_id" values of a saved model's config, in order: which objects its layers share."""
    return re.findall(r'"shared_object_id": (\d+)', zipfile.ZipFile(path).read("config.json").decode())
