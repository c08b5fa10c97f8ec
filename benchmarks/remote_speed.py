"""Time `dvc push` and `dvc pull` of a project's committed outputs through a fresh local remote, in throwaway clones.

    python benchmarks/remote_speed.py [PROJECT]   # PROJECT: a git + DVC repository, default the current directory

The project itself is not changed: a clone borrows its cache (read only) to push from, a second clone with an
empty cache pulls. Prints a markdown table (step, seconds, files and MiB in the remote), for BENCHMARKS.md.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def dvc(args: list[str], cwd: Path) -> float:
    """Run a command (the venv's bin first on PATH) in cwd, failing loudly; return its wall seconds."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed in {cwd}:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start


def folder_size(path: Path) -> tuple[int, float]:
    """Files under path and their total size in MiB."""
    sizes = [item.stat().st_size for item in path.rglob("*") if item.is_file()]
    return len(sizes), sum(sizes) / 2**20


def clone(project: Path, target: Path, remote: Path) -> Path:
    """A git clone of the project whose default remote is `remote` (set in the clone's .dvc/config.local)."""
    dvc(["git", "clone", "-q", str(project), str(target)], target.parent)
    dvc(["dvc", "remote", "add", "--local", "--default", "bench", str(remote)], target)
    return target


def measure(project: Path, work: Path) -> list[tuple[str, float, int, float]]:
    """(step, seconds, files in the remote, MiB in the remote) for each push and pull step."""
    remote = work / "remote"
    remote.mkdir()
    source, pulled = clone(project, work / "source", remote), clone(project, work / "pulled", remote)
    dvc(["dvc", "cache", "dir", "--local", str(project / ".dvc/cache")], source)
    rows = []
    for step, args, cwd in [
        ("push (data, features, models)", ["dvc", "push"], source),
        ("push --run-cache, after it", ["dvc", "push", "--run-cache"], source),
        ("push again, nothing new", ["dvc", "push", "--run-cache"], source),
        ("pull into a fresh clone (fetch + checkout)", ["dvc", "pull", "--run-cache"], pulled),
    ]:
        seconds = dvc(args, cwd)
        rows.append((step, seconds, *folder_size(remote)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", nargs="?", type=Path, default=Path.cwd())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remote-speed-") as work:
        rows = measure(args.project.resolve(), Path(work))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; project: {args.project.resolve().name}\n")
    print("| step | seconds | files in remote | MiB in remote |\n|---|---:|---:|---:|")
    for step, seconds, files, mib in rows:
        print(f"| {step} | {seconds:.1f} | {files} | {mib:.0f} |")


if __name__ == "__main__":
    main()
