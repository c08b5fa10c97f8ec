"""Push the files the local run-cache restores that `dvc push --run-cache` leaves behind.

Run it in the project after `dvc push --run-cache`, on every machine that trained. DVC 3 keeps
a stage's `cache: false` metrics in its run-cache (it commits them to the local cache), but
`dvc push --run-cache` sends only the run-cache's entries and the outputs dvc.lock marks
cached: another clone then finds the entry of `train@<backbone>`, misses its
dvclive/train/<backbone>/metrics.json on the remote, and trains again. This pushes every file
the local run-cache's entries name to the default remote (or --remote), through DVC's own API.
"""

import argparse
import sys
from pathlib import Path

from dvc.repo import Repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", "-r", help="the DVC remote (default: the project's default remote)")
    args = parser.parse_args()
    with Repo() as repo:
        runs = Path(repo.stage_cache.cache_dir)
        entries = [(entry.parent.name, entry.name) for entry in runs.glob("*/*/*")]
        pushed = failed = 0
        for objects in repo.stage_cache.get_used_objs(entries).values():
            result = repo.cloud.push(objects, remote=args.remote)
            pushed, failed = pushed + len(result.transferred), failed + len(result.failed)
    print(f"{len(entries)} run-cache entries: {pushed} files pushed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
