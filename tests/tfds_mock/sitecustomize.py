"""Under `PIPELINE_TFDS_MOCK=<data dir>`, the `dedupe` stage (`python -m pipeline dedupe`) reads TFDS through
TFDS' own `tfds.testing.mock_data`, with the metadata written in that data dir (tests/test_sources.py).

The mock is entered when the stage itself imports TFDS, so that TensorFlow starts where it does in a real
run. On PYTHONPATH only in the tests that set the variable; every other process is left alone.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

_MOCKS = []  # the mock entered, kept for the whole process


class _MockOnImport(importlib.abc.MetaPathFinder):
    """Finds tensorflow_datasets as usual, and enters TFDS' mock once its module has run."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow_datasets":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def run_then_mock(module):
            run(module)
            testing = importlib.import_module("tensorflow_datasets.testing")
            _MOCKS.append(testing.mock_data(num_examples=int(os.environ.get("PIPELINE_TFDS_EXAMPLES", "12")),
                                            policy=testing.MockPolicy.USE_FILES,
                                            data_dir=os.environ["PIPELINE_TFDS_MOCK"]))
            _MOCKS[0].__enter__()

        spec.loader.exec_module = run_then_mock
        return spec


if os.environ.get("PIPELINE_TFDS_MOCK") and sys.orig_argv[-2:] == ["pipeline", "dedupe"]:
    sys.meta_path.insert(0, _MockOnImport())
