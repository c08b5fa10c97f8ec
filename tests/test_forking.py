"""The mri stages' worker processes, forked from a process that has run TensorFlow (a test, a notebook)."""

import os
import signal
import subprocess
import sys

import pytest

from pipeline.core.errors import PipelineError
from pipeline.mri.dedupe import _mapper
from tests.conftest import ROOT, files_on_disk

AFTER_KERAS = """
import gc, os, sys
from pathlib import Path
import keras, numpy as np
from pipeline.core.params import parse_params
from pipeline.mri.dedupe import build_index
from pipeline.mri.synth import write_archive
from tests.conftest import TINY_DEDUPE, TINY_SYNTH, raw_params
gc.disable()  # what training leaves for the collector stays there until a child collects
for _ in range(3):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile("adam", "mse")
    model.fit(np.zeros((64, 8)), np.zeros((64, 4)), verbose=0)
    del model
os.register_at_fork(after_in_child=gc.collect)  # each child collects at once, not whenever it happens to
params = parse_params(raw_params(synth=TINY_SYNTH, dedupe={**TINY_DEDUPE, "workers": 2}))
root = Path(sys.argv[1])
truth = write_archive(root, params.data.classes, params.synth)
rows, _ = build_index(root, params.data.classes, params.dedupe)
print(len(truth), len(rows))
"""


def test_synth_and_dedupe_workers_fork_from_a_process_that_trained_a_keras_model(tmp_path):
    done = subprocess.run([sys.executable, "-c", AFTER_KERAS, str(tmp_path / "archive")], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    found = len(files_on_disk(tmp_path / "archive"))
    assert done.stdout.split() == [str(found), str(found)], done.stdout


def killed_at_three(number: int) -> int:
    if number == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return number


def test_a_dedupe_worker_that_dies_is_one_error_saying_what_to_do():
    """Killed with jobs still in its pipe, a worker's end is a reset connection to the stage, not an end of file."""
    with _mapper(2) as mapper, pytest.raises(PipelineError, match=r"^a dedupe worker process died \(out of memory\?\); "
                                                                  "rerun with dedupe.workers: 1"):
        list(mapper(killed_at_three, range(40)))
