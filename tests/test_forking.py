"""The mri stages' worker processes, forked from a process that has run TensorFlow (a test, a notebook)."""

import subprocess
import sys

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

