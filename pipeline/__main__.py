"""Command line: `python -m pipeline <stage> [backbone] [--params P]`, or `python -m pipeline predict SCAN...`."""

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params

STAGES = ("synth", "dedupe", "split", "preprocess", "weights", "features", "train", "finetune", "evaluate", "compare",
          "plots_page", "audit", "baselines")
BACKBONE_STAGES = ("weights", "features", "train", "finetune", "evaluate")  # these take the backbone's name
COMMANDS = (*STAGES, "predict")  # predict takes scans' paths


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so `finally` blocks delete partly written files on the way out.

    Forked worker processes get SIGTERM's default back: their pools stop them with it, and a
    worker raising SystemExit mid-queue-read can leave its siblings waiting on a lock forever.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("stage", choices=COMMANDS)
    parser.add_argument("names", nargs="*", help="the backbone, for " + ", ".join(BACKBONE_STAGES)
                        + "; the scans, for predict")
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    args = parser.parse_intermixed_args(argv)  # --params before, between or after the names
    if args.stage == "predict" and not args.names:
        parser.error("predict takes the paths of one or more scans")
    if args.stage != "predict" and len(args.names) != (args.stage in BACKBONE_STAGES):
        parser.error(f"stage {args.stage} takes {'a' if args.stage in BACKBONE_STAGES else 'no'} backbone name")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    exit_on_sigterm()
    try:
        stage = importlib.import_module(f"pipeline.stages.{args.stage}")
        stage.main(load_params(args.params), *args.names)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # outputs are whole or absent: `replacing` cleaned up
        return 128 + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
