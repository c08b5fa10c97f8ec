"""Wall time of every stage of `dvc repro`, read from DVC's own output as it runs.

    python benchmarks/pipeline_time.py [--force]   # --force reruns every stage, as on a fresh clone
    python3 benchmarks/pipeline_time.py --make      # on a bare clone: `make repro`, .venv creation first

Prints a markdown table (stage, seconds) and the total, for BENCHMARKS.md.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def timed_repro(command: list[str]) -> tuple[list[tuple[str, float]], float, int]:
    """Run a command that runs dvc repro; return (stage, seconds) in the order run, the total and the exit code.

    Whatever comes before the first stage (make creating .venv) is the stage "(before the first stage)".
    """
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    stages, current, since = [], "(before the first stage)", start
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        for line in process.stdout:
            if line.startswith("Running stage"):
                now = time.perf_counter()
                stages.append((current, now - since))
                current, since = line.split("'")[1], now
    end = time.perf_counter()
    stages.append((current, end - since))
    return stages, end - start, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rerun every stage")
    parser.add_argument("--make", action="store_true", help="time `make repro` (creates .venv first if missing)")
    args = parser.parse_args()
    command = ["make", "repro"] if args.make else ["dvc", "repro", *(["--force"] if args.force else [])]
    stages, total, code = timed_repro(command)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {' '.join(command)}\n")
    print("| stage | seconds |\n|---|---:|")
    for stage, seconds in stages:
        print(f"| {stage} | {seconds:.0f} |")
    print(f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |")
    sys.exit(code)


if __name__ == "__main__":
    main()
