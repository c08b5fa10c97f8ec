"""SIGTERM: the stage process exits through its cleanup; the worker processes it forks die as usual."""

import multiprocessing
import os
import signal

import pytest

from pipeline.__main__ import exit_on_sigterm


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


def test_forked_workers_get_the_default_sigterm_back(stage_handler):
    with multiprocessing.get_context("fork").Pool(2) as pool:  # a pool stops its workers with SIGTERM
        dispositions = pool.map(signal.getsignal, [signal.SIGTERM] * 4)
    assert dispositions == [signal.SIG_DFL] * 4
