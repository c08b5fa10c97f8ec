"""Command line: `python -m pipeline <stage> [backbone] [--fold I] [--params P]`, `python -m pipeline predict SCAN...
[--explain DIR]`, `python -m pipeline serve [--host H] [--port P] [--allow-remote [NAME ...]]`, `python -m
pipeline select [--metric M]`, or `python -m pipeline sync-dvc-yaml` (dvc.yaml's training plots and artifacts
rewritten for params.yaml's backbones).

TensorFlow's start-up lines (oneDNN, CPU features, absl, retracing) are hidden unless PIPELINE_TF_LOGS=1.
"""

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

TF_LOGS = os.environ.get("PIPELINE_TF_LOGS") == "1"
if not TF_LOGS:  # before anything imports TensorFlow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.core import paths  # noqa: E402
from pipeline.core import stderr_filter as filtering  # noqa: E402
from pipeline.core.errors import PipelineError  # noqa: E402
from pipeline.core.params import load_params  # noqa: E402

STAGES = ("synth", "dedupe", "split", "preprocess", "weights", "features", "train", "finetune", "evaluate", "explain",
          "compare", "plots_page", "audit", "baselines")
BACKBONE_STAGES = ("weights", "features", "train", "finetune", "evaluate", "explain")  # these take the backbone's name
FOLD_STAGES = ("features", "train", "finetune", "evaluate", "audit")  # these take --fold (split.folds > 1)
COMMANDS = (*STAGES, "predict", "serve", "select", "sync-dvc-yaml")  # predict takes scans' paths; serve and select,
# their options


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so `finally` blocks delete partly written files on the way out.

    Forked worker processes get SIGTERM's default back: their pools stop them with it, and a
    worker raising SystemExit mid-queue-read can leave its siblings waiting on a lock forever.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


FILTER_DRAIN_SECONDS = 10  # how long a finished command waits for the filter to pass its last lines


@contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """Run the block with TensorFlow's start-up lines dropped from stderr (file descriptor 2) and every other line
    passed as it comes, and TensorFlow's and absl's Python warnings (retracing notes among them) hidden.

    Lines go through a process of its own, `pipeline/core/stderr_filter.py`, for the whole command: TensorFlow
    imported late (a download, a TFDS source) is quiet too, and what a native crash leaves in the pipe still
    reaches the user. The filter starts a session of its own, so Ctrl-C and a signal to the command's process
    group leave it passing the command's last words; it ends when every writer has gone.
    """
    for logger in ("tensorflow", "absl"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    stderr_filter = subprocess.Popen([sys.executable, "-I", filtering.__file__], stdin=read_end, stdout=2,
                                     start_new_session=True)
    os.close(read_end)
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        try:
            stderr_filter.wait(timeout=FILTER_DRAIN_SECONDS)
        except subprocess.TimeoutExpired:  # a process the command started still holds the pipe: it passes the rest
            pass


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
    serving.add_argument("--allow-remote", nargs="*", metavar="NAME",
                         help="allow a --host beyond this machine, answering requests named for NAME (none: any name)")
    parser.add_argument("--fold", type=int, help="the fold (0 to split.folds - 1) for " + ", ".join(FOLD_STAGES))
    parser.add_argument_group("select").add_argument("--metric", help="the val metric to maximise (log_loss and "
                                                     "ece: minimise); default balanced_accuracy")
    args = parser.parse_intermixed_args(argv)  # --params before, between or after the names
    options = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if args.allow_remote is not None:
        options["allow_remote"] = args.allow_remote
    if options and args.stage != "serve":
        parser.error("--host, --port and --allow-remote are for serve")
    if args.metric is not None:
        if args.stage != "select":
            parser.error("--metric is for select")
        options["metric"] = args.metric
    if args.fold is not None:
        if args.stage not in FOLD_STAGES:
            parser.error(f"--fold is for {', '.join(FOLD_STAGES)}")
        options["fold"] = args.fold
    if args.explain is not None:
        if args.stage != "predict":
            parser.error("--explain is for predict")
        options["explain"] = args.explain
    if args.stage == "predict" and not args.names:
        parser.error("predict takes the paths of one or more scans")
    if args.stage not in ("predict", "serve", "select") and len(args.names) != (args.stage in BACKBONE_STAGES):
        parser.error(f"stage {args.stage} takes {'a' if args.stage in BACKBONE_STAGES else 'no'} backbone name")
    if args.stage in ("serve", "select") and args.names:
        parser.error(f"{args.stage} takes no names")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    exit_on_sigterm()
    with nullcontext() if TF_LOGS else quiet_tensorflow():
        return run_command(args.stage, args.names, args.params, options)


def run_command(command: str, names: list[str], params: Path, options: dict) -> int:
    """Import the command's module and run it: its exit status, with a PipelineError or Ctrl-C as one line."""
    try:
        module = importlib.import_module(f"pipeline.stages.{command.replace('-', '_')}")
        loaded = load_params(params)
        if "fold" in options and not 0 <= options["fold"] < loaded.split.folds:
            raise PipelineError(f"--fold {options['fold']}: split.folds is {loaded.split.folds}, so the folds are 0 "
                                f"to {loaded.split.folds - 1}")
        module.main(loaded, *names, **options)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # outputs are whole or absent: `replacing` cleaned up
        return 128 + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
