"""Size and read speed of TFRecords per stored encoding (png, jpeg, raw) and image size.

Writes the same scans with each encoding through the preprocess stage's own writer, then
reads them back through `make_dataset` as training does (shuffled, 3 channels), also with
params.yaml's augmentation as fine-tuning streams it, and prints a markdown table. The scans
are synthetic brain slices, originals and augmented copies (or the image files of --archive).
With --channels 3 they are RGB files: three shifted copies of each gray scan as R, G and B
(so the channels differ).
"""

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from pipeline.core.params import ENCODINGS, AugmentParams, load_params
from pipeline.imaging.augment import augment_dataset
from pipeline.imaging.reader import is_image_name, load_image
from pipeline.imaging.tfrecords import make_dataset, write_tfrecords
from pipeline.mri.anatomy import load_template, subject_slices
from pipeline.mri.synth import augment
from pipeline.tables.split import SplitRow as Row

LABEL = "scan"
WARM_UP_BATCHES = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, help="read this folder's image files instead of synthesizing")
    parser.add_argument("--images", type=int, default=256, help="how many scans (default 256)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="image sizes (default 64 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--read", type=int, default=2048, help="images per timed read, after warm-up (default 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed reads per cell; the median counts (default 3)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1, help="stored channels (default 1)")
    parser.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS))
    args = parser.parse_args()
    augment_params = load_params(ROOT / "params.yaml").augment
    with tempfile.TemporaryDirectory() as tmp:
        root = args.archive or _synthesize(Path(tmp) / "archive", args.images, args.channels)
        rows = _rows(root, args.images)
        print(f"{len(rows)} scans from {root}, {args.channels} channel(s) stored; batch size {args.batch_size}; "
              f"read images/s: median of {args.repeats} reads of {args.read} images\n")
        print("| size | encoding | KiB/image | write images/s | read images/s | read and augment images/s "
              "| mean abs error |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            expected = np.stack([load_image(root / row.path, size, args.channels) for row in rows])
            expected = expected[..., None] if args.channels == 1 else expected
            for encoding in args.encodings:
                out = Path(tmp) / f"{size}-{encoding}"
                start = time.perf_counter()
                write_tfrecords(rows, root, out, (LABEL,), args.channels, size, encoding, shard_size=64)
                write_rate = len(rows) / (time.perf_counter() - start)
                kib = sum(path.stat().st_size for path in out.glob("*.tfrecord")) / len(rows) / 1024
                read_rate = _read_rate(out, args.batch_size, args.read, args.repeats)
                augmented_rate = _read_rate(out, args.batch_size, args.read, args.repeats, augment_params)
                error = _mean_abs_error(out, expected)
                print(f"| {size} | {encoding} | {kib:.1f} | {write_rate:.0f} | {read_rate:.0f} | {augmented_rate:.0f} "
                      f"| {error:.2f} |")


def _synthesize(root: Path, count: int, channels: int) -> Path:
    """Half originals (slices of synthetic subjects), half augmented copies of them, as gray or RGB PNG files."""
    rng = np.random.default_rng(0)
    template = load_template()
    originals = []
    while len(originals) < -(-count // 2):
        originals += list(subject_slices(template, rng.uniform(0, 1), 32, rng))
    originals = originals[: -(-count // 2)]
    copies = [np.asarray(augment(Image.fromarray(pixels), rng).convert("L")) for pixels in originals]
    root.mkdir(parents=True)
    for number, pixels in enumerate((originals + copies)[:count]):
        Image.fromarray(_coloured(pixels) if channels == 3 else pixels).save(root / f"{number:05d}.png")
    return root


def _coloured(pixels: np.ndarray) -> np.ndarray:
    """A gray scan as RGB whose channels differ: three shifted copies of it as R, G and B."""
    return np.stack([pixels, np.roll(pixels, 4, axis=0), np.roll(pixels, 4, axis=1)], axis=-1)


def _rows(root: Path, count: int) -> list[Row]:
    """Up to `count` image files under `root`, evenly spread, as train rows of one class."""
    paths = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if is_image_name(path))
    paths = paths[:: max(1, len(paths) // count)][:count]
    return [Row(path, LABEL, "train", path, path, "original") for path in paths]


def _read_rate(out: Path, batch_size: int, n_images: int, repeats: int, augment: AugmentParams | None = None) -> float:
    """Median images/s through make_dataset as training reads (and augments), after a few warm-up batches."""
    dataset = make_dataset(out, "train", batch_size, shuffle=True, seed=0, channels=None if augment else 3, repeat=True)
    if augment:
        dataset = augment_dataset(dataset, augment, seed=0)
    batches = iter(dataset)
    for _ in range(WARM_UP_BATCHES):
        next(batches)
    n_batches = -(-n_images // batch_size)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in itertools.islice(batches, n_batches):
            pass
        rates.append(n_batches * batch_size / (time.perf_counter() - start))
    return float(np.median(rates))


def _mean_abs_error(out: Path, expected: np.ndarray) -> float:
    """Mean absolute pixel difference between what was read back (as stored) and the resized scans."""
    images = np.concatenate([images for images, _ in make_dataset(out, "train", 64, channels=None)])
    return float(np.abs(images - expected).mean())


if __name__ == "__main__":
    main()
