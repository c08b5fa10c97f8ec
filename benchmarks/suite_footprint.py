"""The test suite's wall time and the most disk it holds at once, as CI runs it on a fresh clone.

    .venv/bin/python benchmarks/suite_footprint.py [pytest arguments]   # default: -q tests --durations=15

Runs pytest and samples, every second, the used space of the filesystem that holds the temporary folder: all the
suite writes (its tmp_path folders, DVC caches and remotes, Chromium's profile), less what it has removed again.
Prints pytest's own output, then the peak and the wall time, for BENCHMARKS.md ("The test suite").
"""

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_use(command: list[str], folder: Path) -> tuple[int, int, float]:
    """Run command; return its exit code, the most bytes the filesystem of `folder` gained over its start, and
    the wall time in seconds."""
    start_used, peak, done = shutil.disk_usage(folder).used, 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(1):
            peak = max(peak, shutil.disk_usage(folder).used - start_used)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    code = subprocess.run(command, check=False, cwd=ROOT).returncode
    done.set()
    sampler.join()
    return code, peak, time.perf_counter() - start


def main() -> None:
    arguments = sys.argv[1:] or ["-q", "tests", "--durations=15"]
    folder = Path(tempfile.gettempdir())
    code, peak, seconds = peak_use([sys.executable, "-m", "pytest", *arguments], folder)
    print(f"\npytest {' '.join(arguments)}: exit {code}, {seconds / 60:.1f} min, at most {peak / 2**30:.2f} GiB "
          f"more used on {folder}'s filesystem; {platform.machine()}, {os.cpu_count()} cores")
    sys.exit(code)


if __name__ == "__main__":
    main()
