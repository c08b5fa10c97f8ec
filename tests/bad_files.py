"""Files that are not usable scans, each written the way it turns up in real archives."""

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def plant_bad_files(class_dir: Path) -> dict[str, str]:
    """Write one bad file of each kind into `class_dir`; map each name to a word its reason must hold."""
    gray = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    good = class_dir / "good.jpg"
    Image.fromarray(gray).save(good)
    data = good.read_bytes()
    good.unlink()
    (class_dir / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (class_dir / "empty.jpg").write_bytes(b"")
    (class_dir / "text.jpg").write_text("this is not an image\n")
    Image.fromarray(np.dstack([gray, gray, gray, gray // 2])).save(class_dir / "alpha.png")
    Image.fromarray(gray.astype(np.uint16) * 200).save(class_dir / "deep.png")
    Image.fromarray(gray).convert("CMYK").save(class_dir / "cmyk.jpg")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(class_dir / "dot.png")
    (class_dir / "bomb.png").write_bytes(_png_header_only(60000, 60000))
    (class_dir / "notes.txt").write_text("scanner notes\n")
    return {
        "truncated.jpg": "truncated",
        "empty.jpg": "empty",
        "text.jpg": "not a readable image",
        "alpha.png": "RGBA",
        "deep.png": "16-bit",
        "cmyk.jpg": "CMYK",
        "dot.png": "too small",
        "bomb.png": "too large",
        "notes.txt": "not an image file",
    }


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size (a decompression bomb) but carries one tiny row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
