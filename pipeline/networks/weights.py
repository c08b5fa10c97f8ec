"""Keras' ImageNet weight files: from Keras' cache, or downloaded there (verified) on first use.

`KERAS_WEIGHTS_MIRROR`, when set, is a base URL that holds Keras' file names (a hospital's
mirror); otherwise files come from Keras' own download site.
"""

import hashlib
import os
import tempfile
from pathlib import Path

import keras

from pipeline.core.errors import PipelineError
from pipeline.core.registry import Backbone

KERAS_SITE = "https://storage.googleapis.com/tensorflow/keras-applications"
MIRROR_VARIABLE = "KERAS_WEIGHTS_MIRROR"


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
