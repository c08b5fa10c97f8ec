"""The weights a base starts from: Keras' ImageNet files (from Keras' cache, downloaded there and verified
on first use), a file of the user's, or none; staged into a folder DVC tracks and sends through its remote.

`KERAS_WEIGHTS_MIRROR`, when set, is a base URL that holds Keras' file names (a hospital's
mirror); otherwise files come from Keras' own download site.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.core.errors import PipelineError, check_inputs, require_file
from pipeline.core.files import replacing, write_json
from pipeline.core.registry import Backbone

KERAS_SITE = "https://storage.googleapis.com/tensorflow/keras-applications"
MIRROR_VARIABLE = "KERAS_WEIGHTS_MIRROR"
SOURCE_NAME = "source.json"  # beside the staged file: where it came from and its sha256


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weight files: $KERAS_HOME/models, else ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def origin(backbone: Backbone, file_name: str) -> str:
    """The URL a weight file is downloaded from: the mirror's, or Keras' own."""
    mirror = os.environ.get(MIRROR_VARIABLE, "").rstrip("/")
    return f"{mirror}/{file_name}" if mirror else f"{KERAS_SITE}/{backbone.weights_folder}/{file_name}"


def sha256(path: Path) -> str:
    """The file's sha256, hex."""
    return _digest(path, "sha256")


def matches(path: Path, expected: str | None) -> bool:
    """Whether the file has the hash Keras publishes (md5, or sha256 when 64 hex digits long); True without one."""
    return expected is None or _digest(path, "sha256" if len(expected) == 64 else "md5") == expected


def _digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def imagenet_weights(backbone: Backbone, size: int) -> Path:
    """Keras' ImageNet file (no top) for this backbone and input size, in Keras' cache; downloaded there first
    when missing or not matching Keras' published hash. A failed or mismatched download leaves nothing behind."""
    name = backbone.weights_file(size)
    path = keras_cache_dir() / name
    if path.is_file() and matches(path, backbone.weights_hash):
        return path
    import keras  # only to download: staging `weights: none` needs no Keras

    url = origin(backbone, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as folder:
        try:  # into a folder of its own, so that only a whole, verified file reaches the cache
            downloaded = keras.utils.get_file(name, url, cache_dir=folder, cache_subdir=".",
                                              file_hash=backbone.weights_hash)
        except Exception as error:  # Keras raises a bare Exception for URL errors, ValueError for a bad hash
            reason = " ".join(str(error).split()) or type(error).__name__
            raise PipelineError(
                f"{backbone.name}: could not get Keras' ImageNet weights {name} from {url} ({reason}); "
                f"on a machine without network put that file in {path.parent}/ (or set {MIRROR_VARIABLE} to a "
                "base URL that holds Keras' file names), or set `weights: none` to start from random weights"
            ) from None
        os.replace(downloaded, path)
    return path


def weights_path(backbone: Backbone, weights: str, size: int) -> Path | None:
    """The weights file to load into the base (None for random init): Keras' ImageNet file, or the given path."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return imagenet_weights(backbone, size)
    path = Path(weights)
    if not path.is_file():
        raise PipelineError(f"weights file {weights} not found; params.yaml weights takes imagenet, none or a path")
    return path


def stage_weights(backbone: Backbone, weights: str, size: int, out_dir: Path) -> dict:
    """Replace `out_dir` with the file the base starts from (none for `weights: none`) and source.json; return it."""
    source = weights_path(backbone, weights, size)
    file = source.name if source else None
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    record = {"backbone": backbone.name, "weights": weights, "input_size": size, "file": file, "sha256": None}
    if source is not None:
        with replacing(out_dir / file) as partial:
            shutil.copyfile(source, partial)
        record["sha256"] = sha256(out_dir / file)
    write_json(out_dir / SOURCE_NAME, record)
    return record


def staged_weights(weights_dir: Path, weights: str, size: int) -> tuple[Path | None, dict]:
    """The staged file (None for random weights) and its source.json, or a PipelineError saying how to stage it
    (none staged, or staged for other `weights` or input size than these)."""
    path = weights_dir / SOURCE_NAME
    stage = f"weights@{weights_dir.name}"
    require_file(path, stage)
    record = json.loads(path.read_text())
    check_inputs(path, record, {"weights": weights, "input_size": size}, stage)
    return (weights_dir / record["file"] if record["file"] else None), record
