"""Dedupe time against the time to merely decode every image once, at several archive sizes.

    python benchmarks/dedupe_speed.py [--scales 1 4] [--repeats 3] [--workdir /tmp/dedupe-bench]

Builds the demo archive from params.yaml scaled by each of --scales (subjects and copies
scaled; x15 has about as many files as the real archive's 40,384), once per synth settings and
code (kept in --workdir, named by their hash, so changed params or code build anew), then for
each, --repeats times in turn: lists and decodes every image once with the same worker count
dedupe uses (the baseline the target is judged against), lists and decodes them once in this
process alone (for context: the plainest "merely decode" loop), and times `build_index`.
Reports the medians, so that one slow moment on a shared machine does not decide the ratio.
Prints a markdown table.
"""

import argparse
import hashlib
import multiprocessing
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.core.params import load_params
from pipeline.mri.dedupe import build_index
from pipeline.mri.layout import find_files
from pipeline.mri.synth import write_archive

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE_CODE = ("pipeline/mri/synth.py", "pipeline/mri/anatomy.py")  # what writes the archives, besides their settings


def decode(path: Path) -> int:
    """Fully decode one file, as the baseline's unit of work."""
    with Image.open(path) as image:
        return int(np.asarray(image).shape[0])


def decode_all(root: Path, classes: tuple[str, ...], workers: int) -> float:
    """Seconds to list the archive and fully decode each file once, as dedupe lists and reads it."""
    start = time.perf_counter()
    paths = [root / file.path for file in find_files(root, classes)[0]]
    if workers == 1:
        for path in paths:
            decode(path)
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(decode, paths, chunksize=32)
    return time.perf_counter() - start


def _archive_hash(synth) -> str:
    """A short hash of an archive's synth settings and of the code that writes it."""
    code = b"".join((ROOT / path).read_bytes() for path in ARCHIVE_CODE)
    return hashlib.sha1(repr(synth).encode() + code).hexdigest()[:8]


def _runs(seconds: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dedupe-bench"))
    args = parser.parse_args()
    params = load_params()
    workers = params.dedupe.workers or os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; workers: {workers}\n")
    print(f"| archive | files | decode only, {workers} workers, each run (s) | dedupe, each run (s) | decode median "
          "| dedupe median | dedupe / decode | decode in one process, median (s) | dedupe / one-process decode |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scale in args.scales:
        subjects = tuple((label, count * scale) for label, count in params.synth.subjects)
        synth = params.synth.model_copy(update={"subjects": subjects, "copies_per_class": params.synth.copies_per_class * scale})
        root = args.workdir / f"x{scale}-{_archive_hash(synth)}"
        if not root.is_dir():
            partial = root.with_name(f"{root.name}.partial")  # an interrupted build is never taken for a whole one
            shutil.rmtree(partial, ignore_errors=True)
            write_archive(partial, params.data.classes, synth)
            partial.rename(root)
        decode_times, serial_times, dedupe_times = [], [], []
        for _ in range(args.repeats):
            decode_times.append(decode_all(root, params.data.classes, workers))
            serial_times.append(decode_all(root, params.data.classes, 1))
            start = time.perf_counter()
            rows, _ = build_index(root, params.data.classes, params.dedupe)
            dedupe_times.append(time.perf_counter() - start)
        decode_seconds, serial_seconds = np.median(decode_times), np.median(serial_times)
        dedupe_seconds = np.median(dedupe_times)
        print(f"| demo x{scale} | {len(rows)} | {_runs(decode_times)} | {_runs(dedupe_times)} | "
              f"{decode_seconds:.2f} | {dedupe_seconds:.2f} | {dedupe_seconds / decode_seconds:.2f} | "
              f"{serial_seconds:.2f} | {dedupe_seconds / serial_seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
