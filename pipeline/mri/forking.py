"""Forking the mri stages' worker processes from a parent that may have run TensorFlow."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_for_fork() -> Iterator[None]:
    """Fork inside this block: the children's garbage collector never sees what the parent held at the fork.

    A parent that has run TensorFlow (a test process, a notebook) holds garbage whose finalisers call TF's
    runtime, which a forked child cannot use: a child that collects it dies of a segmentation fault, and a
    pool can wait for that worker forever. Freezing before a fork is the idiom of the `gc` module's docs.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
