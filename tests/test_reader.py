"""The one image reader against hostile files: every failure is an InvalidImage with a reason, never a crash."""

import errno
import io
import os
import re
import socket
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core.errors import PipelineError
from pipeline.imaging.reader import (
    COLOUR_SPREAD,
    InvalidImage,
    decode_full_and_reduced,
    decode_image,
    has_colour,
    is_image_name,
    load_image,
    not_a_file,
    read_image,
)

FORMATS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "TIFF": "tif", "WEBP": "webp", "PPM": "ppm",
           "SGI": "sgi", "IM": "im"}
MUTANTS = 200  # per format


def encoded(format_name: str, mode: str = "L") -> bytes:
    pixels = (np.random.default_rng(0).random((24, 20)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # Pillow deprecates writing IM files; the reader must still read them
        warnings.filterwarnings("ignore", "IM image format is deprecated", DeprecationWarning)
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
            if "decoder failed" in str(error):  # Pillow raised something else than OSError: it is named
                outcomes.append(re.search(r"decoder failed \([A-Za-z.]*Error: ", str(error)) is not None)
    assert len(outcomes) >= MUTANTS and all(outcomes)


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


def saved(path, image: Image.Image, format_name: str = "PNG"):
    image.save(path, format_name)
    return path


def test_a_scan_reads_as_its_grayscale_pixels(tmp_path):
    pixels = (np.random.default_rng(1).random((20, 30)) * 255).astype(np.uint8)
    read = read_image(saved(tmp_path / "gray.png", Image.fromarray(pixels)))
    assert read.dtype == np.uint8 and np.array_equal(read, pixels)
    colour = Image.fromarray(np.dstack([pixels, pixels[::-1], 255 - pixels]))
    assert np.array_equal(read_image(saved(tmp_path / "rgb.png", colour)), np.asarray(colour.convert("L")))


@pytest.mark.parametrize("size, accepted", [((16, 16), True), ((15, 40), False), ((40, 15), False)])
def test_sixteen_pixels_a_side_is_the_smallest_scan(tmp_path, size, accepted):
    path = saved(tmp_path / "small.png", Image.new("L", size, 7))
    if accepted:
        assert read_image(path).shape == size[::-1]
    else:
        with pytest.raises(InvalidImage, match=rf"^image too small \({size[0]}x{size[1]}, minimum 16 px a side\)$"):
            read_image(path)


def test_4096_squared_pixels_is_the_largest_scan(tmp_path):
    assert read_image(saved(tmp_path / "big.png", Image.new("L", (4096, 4096)))).shape == (4096, 4096)
    path = saved(tmp_path / "bigger.png", Image.new("L", (4097, 4096)))
    with pytest.raises(InvalidImage, match=r"^image too large \(4097x4096, limit 16777216 pixels\)$"):
        read_image(path)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (Pillow checks the size before decoding)."""
    data = bytearray(encoded("PNG"))
    header = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


@pytest.mark.parametrize("side", [10_000, 20_000])  # past Pillow's bomb warning, past its bomb error
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    with pytest.raises(InvalidImage, match=r"^image too large to decode safely \("):
        read_image(path)


@pytest.mark.parametrize("mode, format_name, found", [
    ("RGBA", "PNG", "RGBA (with transparency)"),
    ("I;16", "PNG", "16-bit"),
    ("P", "GIF", "palette"),
    ("LAB", "TIFF", "LAB"),  # no name of its own: Pillow's
])
def test_other_pixel_kinds_are_named_in_words(tmp_path, mode, format_name, found):
    path = saved(tmp_path / "scan.img", Image.new(mode, (20, 20)), format_name)
    with pytest.raises(InvalidImage, match=rf"^{re.escape(found)} pixels; scans must be 8-bit grayscale or RGB$"):
        read_image(path)


def test_empty_and_unknown_files_say_which(tmp_path):
    path = tmp_path / "scan.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidImage, match=r"^empty file \(0 bytes\)$"):
        read_image(path)
    path.write_bytes(b"just some text, no image at all")
    with pytest.raises(InvalidImage, match=r"^not a readable image \(unknown or corrupt format\)$"):
        read_image(path)


def test_not_a_file_names_what_the_path_is(tmp_path):
    regular = tmp_path / "scan.jpg"
    regular.write_bytes(encoded("JPEG"))
    assert not_a_file(regular) == ""
    assert not_a_file(tmp_path / "gone.jpg") == "no such file (deleted while the stage ran, or a broken symlink)"
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    assert not_a_file(loop) == "a symlink loop, not a file"
    assert not_a_file(regular / "inside.jpg") == "cannot read the file (Not a directory)"
    assert not_a_file(tmp_path) == "a folder, not a regular file"
    assert not_a_file(Path(os.devnull)) == "a character device, not a regular file"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "s.jpg"))
        assert not_a_file(tmp_path / "s.jpg") == "a socket, not a regular file"


def test_a_file_that_fails_to_open_says_why(tmp_path, monkeypatch):
    path = tmp_path / "scan.jpg"
    path.write_bytes(encoded("JPEG"))
    monkeypatch.setattr(type(path), "open", lambda *args, **kwargs: (_ for _ in ()).throw(
        OSError(errno.EIO, "Input/output error")))
    with pytest.raises(InvalidImage, match=r"^cannot read the file \(Input/output error\)$"):
        read_image(path)


def test_image_names_go_by_suffix_in_any_case():
    assert all(is_image_name(Path(name)) for name in ("a.jpg", "b.JPEG", "c.Png", "d.tif", "e.TIFF", "f.webp"))
    assert not any(is_image_name(Path(name)) for name in ("a.txt", "jpg", "b.jpg.bak", "c.dcm"))


def test_a_jpeg_decodes_at_a_reduced_scale_no_smaller_than_asked(tmp_path):
    pixels = (np.random.default_rng(2).random((256, 192)) * 255).astype(np.uint8)
    jpeg = saved(tmp_path / "scan.jpg", Image.fromarray(pixels), "JPEG")
    assert decode_image(jpeg, (40, 50)).size == (48, 64)  # 1/4 scale: the smallest at least 40 x 50
    assert read_image(jpeg, (40, 50)).shape == (64, 48)
    full, reduced = decode_full_and_reduced(jpeg, (40, 50))
    assert full.size == (192, 256) and reduced.size == (48, 64)
    assert np.array_equal(np.asarray(full), read_image(jpeg))
    png = saved(tmp_path / "scan.png", Image.fromarray(pixels))
    full, reduced = decode_full_and_reduced(png, (40, 50))
    assert full is reduced and np.array_equal(np.asarray(full), pixels)


def test_load_image_stretches_to_a_square_with_antialiasing(tmp_path):
    checkerboard = (np.indices((64, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel squares
    loaded = load_image(saved(tmp_path / "scan.png", Image.fromarray(checkerboard)), 16)
    assert loaded.dtype == np.uint8 and loaded.shape == (16, 16)
    assert np.abs(loaded.astype(int) - 127).max() <= 2  # shrunk 4x and 2x: the squares average to mid-gray
    bilinear = Image.fromarray(checkerboard).resize((16, 16), Image.Resampling.BILINEAR)
    assert np.array_equal(loaded, np.asarray(bilinear))


def test_colour_is_told_from_gray_stored_as_rgb_and_read_as_asked(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8)
    as_rgb = np.repeat(gray[..., None], 3, axis=2)
    noisy = as_rgb.astype(np.int16) + np.random.default_rng(1).integers(-2, 3, as_rgb.shape)  # JPEG-like noise
    tinted = as_rgb.copy()
    tinted[..., 0] = np.clip(tinted[..., 0].astype(np.int16) + 40, 0, 255)
    assert not has_colour(as_rgb) and not has_colour(noisy.clip(0, 255).astype(np.uint8)) and has_colour(tinted)
    Image.fromarray(tinted).save(tmp_path / "tinted.png")
    np.testing.assert_array_equal(read_image(tmp_path / "tinted.png", channels=3), tinted)
    assert read_image(tmp_path / "tinted.png").shape == (24, 24)
    assert load_image(tmp_path / "tinted.png", 16, channels=3).shape == (16, 16, 3)


@pytest.mark.parametrize("pixel, colour", [
    ((100, 100, 100), False),
    ((100, 100 + COLOUR_SPREAD // 2, 100), False),  # a spread of COLOUR_SPREAD exactly: still gray
    ((100, 101 + COLOUR_SPREAD // 2, 100), True),  # green off red and off blue: twice, just past the line
    ((100, 100, 101 + COLOUR_SPREAD), True),  # blue alone
    ((101 + COLOUR_SPREAD, 100, 100), True),  # red alone
])
def test_colour_is_a_mean_channel_spread_above_the_line(pixel, colour):
    assert has_colour(np.full((4, 4, 3), pixel, np.uint8)) is colour


def test_a_grayscale_source_refuses_colour_and_reads_gray_stored_as_rgb_as_gray(tmp_path):
    gray = (np.random.default_rng(3).random((128, 96)) * 255).astype(np.uint8)
    tinted = np.repeat(gray[..., None], 3, axis=2)
    tinted[..., 2] = 255 - tinted[..., 2]
    colour = saved(tmp_path / "colour.png", Image.fromarray(tinted))
    with pytest.raises(InvalidImage) as refused:
        decode_full_and_reduced(colour, (20, 20))
    assert str(refused.value) == ("colour pixels in a grayscale source (the archive source reads gray MRI slices; "
                                  "data.source: folder takes colour images)")
    as_rgb = saved(tmp_path / "gray.jpg", Image.fromarray(np.repeat(gray[..., None], 3, axis=2)), "JPEG")
    full, reduced = decode_full_and_reduced(as_rgb, (20, 20))
    assert (full.mode, full.size, reduced.mode, reduced.size) == ("L", (96, 128), "L", (24, 32))
    np.testing.assert_array_equal(np.asarray(full), read_image(as_rgb))
