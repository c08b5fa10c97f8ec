"""The one function that decides what a valid image is, and the resizing every model input gets."""

import errno
import os
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.core.errors import PipelineError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
MIN_SIDE = 16
MAX_PIXELS = 4096 * 4096
DRAFT_FORMATS = frozenset({"JPEG", "MPO"})  # those Image.draft decodes at a reduced scale
ACCEPTED_MODES = frozenset({"L", "RGB"})
MODES = {1: "L", 3: "RGB"}  # channels -> the Pillow mode images are decoded to
COLOUR_SPREAD = 8  # mean |R - G| + |G - B| above which an RGB file holds colour, not gray pixels (JPEG noise is ~1)
MODE_NAMES = {
    "RGBA": "RGBA (with transparency)",
    "LA": "grayscale with transparency",
    "CMYK": "CMYK",
    "I;16": "16-bit",
    "I;16B": "16-bit",
    "I;16L": "16-bit",
    "I": "32-bit integer",
    "F": "floating-point",
    "P": "palette",
    "1": "1-bit",
}


SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)
OPEN_ERRORS = {
    errno.EACCES: "permission denied: this user cannot read the file (check its permissions)",
    errno.EPERM: "permission denied: this user cannot read the file (check its permissions)",
    errno.ENOENT: "no such file (deleted while the stage ran, or a broken symlink)",
    errno.ELOOP: "a symlink loop, not a file",
    errno.EISDIR: "a folder, not a file",
}


class InvalidImage(ValueError):
    """The file is not an image this project can use; the message says why."""


def not_a_file(path: Path) -> str:
    """Why `path` is no regular file to read (a pipe, socket, device, folder, or unreadable); '' when it is one.

    Looks at the file's status only: opening a named pipe for reading would wait for a writer forever.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return OPEN_ERRORS.get(error.errno, f"cannot read the file ({error.strerror})")
    return next((f"{kind}, not a regular file" for test, kind in SPECIAL_FILES if test(mode)), "")


def is_image_name(path: Path) -> bool:
    """Whether the file name has an image suffix this project reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: Path, at_least: tuple[int, int] | None = None, channels: int = 1) -> np.ndarray:
    """Decode one file to an 8-bit grayscale (HxW) or RGB (HxWx3) array, or raise InvalidImage saying why not."""
    return np.asarray(decode_image(path, at_least, channels))


def has_colour(pixels: np.ndarray) -> bool:
    """Whether an RGB array holds colour rather than gray pixels stored as RGB (as Kaggle's copies are)."""
    channels = pixels.astype(np.int16)
    spread = np.abs(channels[..., 0] - channels[..., 1]) + np.abs(channels[..., 1] - channels[..., 2])
    return float(spread.mean()) > COLOUR_SPREAD


def decode_image(path: Path, at_least: tuple[int, int] | None = None, channels: int = 1) -> Image.Image:
    """Decode one file to an 8-bit grayscale (channels 1) or RGB (3) PIL image, or raise InvalidImage saying why not.

    With `at_least` (width, height), a JPEG may be decoded at a reduced scale no smaller than
    that: faster, and every byte of the file is still read and checked. Whatever Pillow raises
    on a corrupt or misnamed file becomes an InvalidImage saying why (the caller names the file).
    """
    with _opened(path) as handle:
        return _decode(handle, at_least, MODES[channels])[0]


def decode_full_and_reduced(path: Path, at_least: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """`decode_image(path)` (pixel identity is judged on it, whatever the container) and `decode_image(path, at_least)`,
    for a grayscale source: an RGB file holding colour, not gray pixels, is refused.

    Only a JPEG decodes differently with `at_least`, so only a JPEG is decoded twice.
    """
    with _opened(path) as handle:
        full, format_name = _decode(handle, None, "L", refuse_colour=True)
        if format_name not in DRAFT_FORMATS:
            return full, full
        handle.seek(0)
        return full, _decode(handle, at_least, "L")[0]


@contextmanager
def _opened(path: Path):
    """`path` opened for reading, or InvalidImage saying why it cannot be; a pipe or device is never opened."""
    problem = not_a_file(path)
    if problem:
        raise InvalidImage(problem)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise InvalidImage(OPEN_ERRORS.get(error.errno, f"cannot read the file ({error.strerror})")) from None
    with handle:
        yield handle


def _decode(handle, at_least: tuple[int, int] | None, mode: str, refuse_colour: bool = False) -> tuple[Image.Image, str]:
    """The image in `mode` (L or RGB) and Pillow's name for its format."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd tags: the outcome alone decides
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                _check_header(image)
                if at_least:
                    image.draft(mode, at_least)
                image.load()
                if refuse_colour and image.mode == "RGB" and has_colour(np.asarray(image)):
                    raise InvalidImage("colour pixels in a grayscale source (the archive source reads gray MRI "
                                       "slices; data.source: folder takes colour images)")
                return (image if image.mode == mode else image.convert(mode)), image.format
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidImage(f"image too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        if os.fstat(handle.fileno()).st_size == 0:
            raise InvalidImage("empty file (0 bytes)") from None
        raise InvalidImage("not a readable image (unknown or corrupt format)") from None
    except OSError as error:
        raise InvalidImage(f"corrupt or truncated image data ({error})") from None
    except Exception as error:  # Pillow's decoders raise ValueError, TypeError, struct.error... on bad bytes
        kind = type(error).__name__
        raise InvalidImage(f"corrupt image data: Pillow's decoder failed ({kind}: {error})") from None


def _check_header(image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InvalidImage(f"image too large ({width}x{height}, limit {MAX_PIXELS} pixels)")
    if min(width, height) < MIN_SIDE:
        raise InvalidImage(f"image too small ({width}x{height}, minimum {MIN_SIDE} px a side)")
    if image.mode not in ACCEPTED_MODES:
        found = MODE_NAMES.get(image.mode, image.mode)
        raise InvalidImage(f"{found} pixels; scans must be 8-bit grayscale or RGB")


def load_image(path: Path, size: int, channels: int = 1) -> np.ndarray:
    """Read one image with the project's reader and stretch it to a size x size (x 3 for RGB) uint8 array.

    Stretched, not padded, as Keras' image_dataset_from_directory does: Kaggle's augmented
    copies are already stretched to squares, and padding would spend pixels on background.
    Pillow's bilinear filter widens with the scale factor, so shrinking is antialiased.
    """
    try:
        pixels = read_image(path, channels=channels)
    except InvalidImage as error:
        raise PipelineError(f"{path}: {error}") from None
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
