"""Signals: SIGTERM and Ctrl-C stop a stage promptly through its cleanup, whatever its workers are doing; a native
crash's last words reach stderr, TensorFlow's start-up lines do not."""

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

import pipeline.__main__ as cli
from pipeline.__main__ import exit_on_sigterm
from pipeline.core import paths
from pipeline.core.stderr_filter import pass_lines
from tests.conftest import ROOT, raw_params


@pytest.fixture
def stage_handler():
    """The stage's SIGTERM handler installed for one test, the previous one restored after it."""
    previous = signal.getsignal(signal.SIGTERM)
    exit_on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_raises_system_exit_in_the_stage_process(stage_handler):
    with pytest.raises(SystemExit) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.value.code == 128 + signal.SIGTERM


FORKED_POOL = """
import multiprocessing, signal
from pipeline.__main__ import exit_on_sigterm
def sigterm_handler(_):
    handler = signal.getsignal(signal.SIGTERM)
    return "default" if handler is signal.SIG_DFL else handler.__qualname__
exit_on_sigterm()
with multiprocessing.get_context("fork").Pool(2) as pool:  # a pool stops its workers with SIGTERM
    print(*pool.map(sigterm_handler, range(4)), "stage:", sigterm_handler(None))
"""


def test_forked_workers_get_the_default_sigterm_back():
    """In a process of its own, as a stage is. Forked from a pytest-xdist worker that had run TensorFlow, one of
    this pool's two workers was lost (twice, the garbage fix in place the second time), and the pool waited forever."""
    done = subprocess.run([sys.executable, "-c", FORKED_POOL], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    workers, stage = done.stdout.split(" stage: ")
    assert workers.split() == ["default"] * 4
    assert stage.split() == ["exit_on_sigterm.<locals>.<lambda>"]


START_UP = (b"I0000 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results\n"
            b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
CRASHING_STAGE = f"""
import os
os.write(2, {START_UP!r})
os.write(2, b"F0000 the native library's last words\\n")
os.abort()
"""
RUN_SYNTH_FROM = "import sys, pipeline.stages; pipeline.stages.__path__.insert(0, sys.argv[1]); " \
                 "from pipeline.__main__ import main; main(['synth'])"


def test_a_native_crash_while_a_stage_imports_still_shows_its_message_and_no_start_up_lines(tmp_path):
    """The stage module is a stand-in whose import writes as TensorFlow's C++ code does, then aborts."""
    (tmp_path / "synth.py").write_text(CRASHING_STAGE)
    env = {key: value for key, value in os.environ.items() if key != "PIPELINE_TF_LOGS"}
    done = subprocess.run([sys.executable, "-c", RUN_SYNTH_FROM, str(tmp_path)], check=False, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGABRT
    assert done.stderr == "F0000 the native library's last words\n"


def test_the_filter_drops_start_up_lines_and_passes_the_rest_whole(tmp_path):
    source, sink = os.pipe()
    os.write(sink, b"export 10%\r" + START_UP + b"export 100%\r\nwarning: kept\nno newline at the end")
    os.close(sink)
    with (tmp_path / "passed").open("wb") as passed:
        pass_lines(source, passed.fileno())
    os.close(source)
    assert (tmp_path / "passed").read_bytes() == b"export 10%\rexport 100%\r\nwarning: kept\nno newline at the end"


def slow_archive(root: Path) -> Path:
    """A plain archive whose scan takes seconds: a few large PNGs, quick to write (copies of one)."""
    folder = root / "archive" / "NonDemented"
    folder.mkdir(parents=True)
    rows, cols = np.mgrid[:3400, :3000]
    brain = ((rows - 1700) ** 2 / 1500**2 + (cols - 1500) ** 2 / 1300**2 < 1) * (100 + cols % 97)
    Image.fromarray(brain.astype(np.uint8)).save(folder / "nonDem0.png", compress_level=1)
    (root / "archive" / "MildDemented").mkdir()
    for number in range(1, 48):
        shutil.copy(folder / "nonDem0.png", root / "archive" / ("NonDemented", "MildDemented")[number % 2]
                    / f"scan{number}.png")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(raw_params(data={"archive": str(root / "archive")}, dedupe={"workers": 2})))
    return params


def signal_mid_scan(tmp_path: Path, signum: int) -> tuple[int, str]:
    """Run the dedupe stage on a slow archive, signal its process group once workers are reading; (status, stderr)."""
    params = slow_archive(tmp_path)
    old_index = tmp_path / paths.INDEX
    old_index.parent.mkdir(parents=True)
    old_index.write_text("the previous run's index\n")
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as errors:
        stage = subprocess.Popen([sys.executable, "-m", "pipeline", "dedupe", "--params", str(params)], cwd=tmp_path,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=errors, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "dedupe: reading" not in stderr.read_text() and time.monotonic() < deadline and stage.poll() is None:
            time.sleep(0.1)
        time.sleep(0.3)  # workers are mid-task: each large PNG takes a while to decode, and there are 48
        assert stage.poll() is None, stderr.read_text()
        os.killpg(stage.pid, signum)
        status = stage.wait(timeout=10)
    finally:
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGKILL)
            stage.wait()
    assert old_index.read_text() == "the previous run's index\n"
    assert not list(old_index.parent.glob(".partial-*")) and not (tmp_path / paths.DEDUPE_METRICS).exists()
    return status, stderr.read_text()


def test_sigterm_to_the_process_group_mid_scan_exits_143_promptly(tmp_path):
    status, _ = signal_mid_scan(tmp_path, signal.SIGTERM)
    assert status in (143, -signal.SIGTERM)


@pytest.fixture
def sigint_reaches_children():
    """SIGINT for the stages this test starts as a terminal's Ctrl-C finds it, also when the tests run in the
    background: a non-interactive shell starts background jobs with SIGINT ignored, and an ignored signal stays
    ignored in every child, whereas a handler is reset to the default when a child starts a program."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_scan_exits_130_with_one_line(tmp_path, sigint_reaches_children):
    status, stderr = signal_mid_scan(tmp_path, signal.SIGINT)
    assert status == 130 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].endswith("interrupted")


def test_params_may_come_anywhere_on_the_command_line(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(importlib, "import_module", lambda name: SimpleNamespace(main=lambda *args: called.append(args)))
    monkeypatch.setattr(cli, "load_params", lambda path: path)
    for argv in (["train", "--params", "p.yaml", "MobileNetV2"], ["train", "MobileNetV2", "--params", "p.yaml"],
                 ["--params", "p.yaml", "train", "MobileNetV2"]):
        assert cli.main(argv) == 0
    assert called == [(Path("p.yaml"), "MobileNetV2")] * 3
