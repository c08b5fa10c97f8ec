"""`weights: imagenet`: Keras' files downloaded on first use from a mirror (a server on loopback here),
verified against the hash Keras publishes, cached, and read from the cache afterwards."""

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import h5py
import keras
import pytest
import yaml
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

from pipeline.core.errors import PipelineError
from pipeline.core.registry import get_backbone
from pipeline.networks.backbones import build_base
from pipeline.networks.weights import MIRROR_VARIABLE, sha256, stage_weights, staged_weights
from tests.conftest import ROOT, raw_params

BACKBONE = "MobileNetV3Small"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served over HTTP on loopback as KERAS_WEIGHTS_MIRROR, with Keras' cache in tmp_path; the
    paths asked for are collected."""
    folder, asked = tmp_path / "mirror", []
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(MIRROR_VARIABLE, f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    yield folder, asked
    server.shutdown()
    server.server_close()


def keras_file(path: Path) -> keras.Model:
    """A base with random weights, saved at `path` in Keras' own (legacy h5) format; returns the base."""
    keras.utils.set_random_seed(1)
    base = build_base(get_backbone(BACKBONE), "none", 32)
    with h5py.File(path, "w") as handle:
        save_weights_to_hdf5_group(handle, base)
    return base


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_first_run_downloads_and_verifies_the_second_reads_the_cache(mirror, tmp_path):
    folder, asked = mirror
    name = get_backbone(BACKBONE).weights_file(32)
    saved = keras_file(folder / name)
    backbone = replace(get_backbone(BACKBONE), weights_hash=md5(folder / name))  # Keras' real file is not here
    loaded = build_base(backbone, "imagenet", 32)
    assert asked == [f"/{name}"]
    cached = tmp_path / "keras" / "models" / name
    assert sha256(cached) == sha256(folder / name)
    for mine, theirs in zip(loaded.weights, saved.weights):
        assert (keras.ops.convert_to_numpy(mine) == keras.ops.convert_to_numpy(theirs)).all()
    build_base(backbone, "imagenet", 32)
    assert asked == [f"/{name}"]  # no second request
    assert sorted(path.name for path in cached.parent.iterdir()) == [name]


def test_a_file_that_does_not_match_keras_hash_is_refused_and_not_cached(mirror, tmp_path):
    folder, asked = mirror
    name = get_backbone(BACKBONE).weights_file(32)
    keras_file(folder / name)
    with pytest.raises(PipelineError) as error:
        build_base(get_backbone(BACKBONE), "imagenet", 32)  # the registry's hash is Keras' real file's
    message = str(error.value)
    assert "\n" not in message and name in message and "hash" in message and "weights: none" in message
    assert asked == [f"/{name}"]
    assert list((tmp_path / "keras" / "models").iterdir()) == []


def test_server_down_and_nothing_cached_is_one_clear_line(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a loopback port that nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(MIRROR_VARIABLE, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(PipelineError) as error:
        build_base(get_backbone("VGG19"), "imagenet", 32)
    message = str(error.value)
    assert "\n" not in message and "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert f"127.0.0.1:{port}" in message and str(tmp_path / "keras" / "models") in message
    assert "weights: none" in message and MIRROR_VARIABLE in message
    assert list((tmp_path / "keras" / "models").iterdir()) == []


def test_staged_weights_pin_the_file_and_its_sha256(mirror, tmp_path):
    folder, _ = mirror
    name = get_backbone(BACKBONE).weights_file(32)
    keras_file(folder / name)
    backbone = replace(get_backbone(BACKBONE), weights_hash=md5(folder / name))
    record = stage_weights(backbone, "imagenet", 32, tmp_path / "staged")
    path, again = staged_weights(tmp_path / "staged", "imagenet", 32)
    assert record == again and path == tmp_path / "staged" / name
    assert record["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert stage_weights(backbone, "none", 32, tmp_path / "staged") == {"backbone": BACKBONE, "weights": "none",
                                                                        "input_size": 32, "file": None, "sha256": None}
    assert staged_weights(tmp_path / "staged", "none", 32)[0] is None and [
        p.name for p in (tmp_path / "staged").iterdir()] == ["source.json"]


def test_the_weights_stage_downloads_with_no_tensorflow_start_up_line(mirror, tmp_path):
    """Keras is imported only to download, after the stage's module: its start-up lines are dropped then too."""
    folder, asked = mirror
    name = get_backbone("MobileNetV2").weights_file(32)  # Keras publishes no hash for it: any bytes will do
    (folder / name).write_bytes(b"MobileNetV2's weights")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params(weights="imagenet", image_size=32)))
    env = {key: value for key, value in os.environ.items() if key != "PIPELINE_TF_LOGS"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "weights", "MobileNetV2"], check=False, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert asked == [f"/{name}"]
    assert (tmp_path / "data/weights/MobileNetV2" / name).read_bytes() == b"MobileNetV2's weights"
    [line] = done.stderr.splitlines()  # nothing of TensorFlow's
    assert line.startswith(f"INFO pipeline.stages.weights: MobileNetV2: weights imagenet ({name}, sha256 ")
