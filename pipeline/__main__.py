"""Command line: `python -m pipeline <stage> [backbone] [--params P]`, `python -m pipeline predict SCAN...
[--explain DIR]`, or `python -m pipeline serve [--host H] [--port P] [--allow-remote]`.

TensorFlow's start-up lines (oneDNN, CPU features, absl, retracing) are hidden unless PIPELINE_TF_LOGS=1.
"""

import argparse
import importlib
import logging
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from types import ModuleType

TF_LOGS = os.environ.get("PIPELINE_TF_LOGS") == "1"
if not TF_LOGS:  # before anything imports TensorFlow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.core import paths  # noqa: E402
from pipeline.core.errors import PipelineError  # noqa: E402
from pipeline.core.params import load_params  # noqa: E402

STAGES = ("synth", "dedupe", "split", "preprocess", "weights", "features", "train", "finetune", "evaluate", "explain",
          "compare", "plots_page", "audit", "baselines")
BACKBONE_STAGES = ("weights", "features", "train", "finetune", "evaluate", "explain")  # these take the backbone's name
COMMANDS = (*STAGES, "predict", "serve")  # predict takes scans' paths; serve takes --host, --port, --allow-remote


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so `finally` blocks delete partly written files on the way out.

    Forked worker processes get SIGTERM's default back: their pools stop them with it, and a
    worker raising SystemExit mid-queue-read can leave its siblings waiting on a lock forever.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


# What TensorFlow's C++ code prints at import whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.21).
TF_START_UP = re.compile(r"oneDNN custom operations are on|All log messages before absl::InitializeLog")


def import_quietly(name: str) -> ModuleType:
    """Import a module with TensorFlow's start-up lines dropped from stderr (file descriptor 2), the rest kept,
    and TensorFlow's and absl's Python warnings (retracing notes among them) hidden; errors still show."""
    for logger in ("tensorflow", "absl"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.writelines(line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                                  if not TF_START_UP.search(line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("stage", choices=COMMANDS)
    parser.add_argument("names", nargs="*", help="the backbone, for " + ", ".join(BACKBONE_STAGES)
                        + "; the scans, for predict")
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    parser.add_argument("--explain", type=Path, metavar="DIR", help="predict: write each model's Grad-CAM overlay of "
                        "each scan under DIR/<backbone>/")
    serving = parser.add_argument_group("serve")
    serving.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serving.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serving.add_argument("--allow-remote", action="store_true", help="allow a --host beyond this machine")
    args = parser.parse_intermixed_args(argv)  # --params before, between or after the names
    options = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if args.allow_remote:
        options["allow_remote"] = True
    if options and args.stage != "serve":
        parser.error("--host, --port and --allow-remote are for serve")
    if args.explain is not None:
        if args.stage != "predict":
            parser.error("--explain is for predict")
        options["explain"] = args.explain
    if args.stage == "predict" and not args.names:
        parser.error("predict takes the paths of one or more scans")
    if args.stage not in ("predict", "serve") and len(args.names) != (args.stage in BACKBONE_STAGES):
        parser.error(f"stage {args.stage} takes {'a' if args.stage in BACKBONE_STAGES else 'no'} backbone name")
    if args.stage == "serve" and args.names:
        parser.error("serve takes no names")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    exit_on_sigterm()
    name = f"pipeline.stages.{args.stage}"
    try:
        stage = importlib.import_module(name) if TF_LOGS else import_quietly(name)
        stage.main(load_params(args.params), *args.names, **options)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # outputs are whole or absent: `replacing` cleaned up
        return 128 + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
