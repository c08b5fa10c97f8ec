"""The one image reader against hostile files: every failure is an InvalidImage with a reason, never a crash."""

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from pipeline.core.errors import PipelineError
from pipeline.imaging.reader import InvalidImage, load_image, read_image

FORMATS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "TIFF": "tif", "WEBP": "webp", "PPM": "ppm",
           "SGI": "sgi", "IM": "im"}
MUTANTS = 200  # per format


def encoded(format_name: str, mode: str = "L") -> bytes:
    pixels = (np.random.default_rng(0).random((24, 20)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format_name)
    return buffer.getvalue()


HEADERS = [encoded(name)[:24] for name in FORMATS] + [b"P5 ", b"P5\n64 64\n255\n", b"\xff\x4f\xff\x51", b"II*\x00"]


def mutants(data: bytes, rng: np.random.Generator):
    """Seeded truncations, byte flips and header swaps of one encoded image."""
    for _ in range(MUTANTS // 4):
        yield data[: rng.integers(0, len(data))]
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 9)):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        yield bytes(flipped)
        header = HEADERS[rng.integers(len(HEADERS))]
        yield header + data[len(header):]
        yield header + data[rng.integers(0, len(data)):]


@pytest.mark.parametrize("format_name", sorted(FORMATS))
def test_mutated_files_give_a_reason_never_an_exception(tmp_path, format_name):
    rng = np.random.default_rng(sorted(FORMATS).index(format_name))
    path = tmp_path / "scan.jpg"  # misnamed on purpose: Pillow goes by the content
    outcomes = []
    for data in mutants(encoded(format_name, "RGB" if format_name == "WEBP" else "L"), rng):
        path.write_bytes(data)
        try:
            outcomes.append(read_image(path).dtype == np.uint8)
        except InvalidImage as error:
            outcomes.append(bool(str(error)))
    assert len(outcomes) == MUTANTS and all(outcomes)


@pytest.mark.parametrize("data, word", [
    (b"P5 not an image\n", "corrupt"),
    (b"P5\n64 64\n255\n", "truncated"),
])
def test_misnamed_netpbm_text_is_invalid(tmp_path, data, word):
    path = tmp_path / "notes.jpg"
    path.write_bytes(data)
    with pytest.raises(InvalidImage, match=word):
        read_image(path)


def test_load_image_names_the_file_of_a_corrupt_tiff(tmp_path):
    data = bytearray(encoded("TIFF"))
    rng = np.random.default_rng(3)
    path = tmp_path / "corrupt.tif"
    for _ in range(200):  # some flips make Pillow raise TypeError or ValueError
        mutated = bytearray(data)
        mutated[rng.integers(8, 200)] = rng.integers(0, 256)
        path.write_bytes(mutated)
        try:
            load_image(path, 16)
        except PipelineError as error:
            assert str(error).startswith(f"{path}: ")


@pytest.mark.parametrize("make, word", [
    (os.mkfifo, "named pipe"),
    (os.mkdir, "a folder"),
])
def test_special_files_are_never_opened(tmp_path, make, word):
    path = tmp_path / "scan.jpg"
    make(path)
    with pytest.raises(InvalidImage, match=word):
        read_image(path)  # a FIFO opened for reading would block here


def test_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "scan.jpg"
    path.write_bytes(encoded("JPEG"))
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads it anyway: make opening fail as it does for other users
        monkeypatch.setattr(type(path), "open", lambda *args, **kwargs: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied")))
    with pytest.raises(InvalidImage, match="permission denied"):
        read_image(path)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
