"""Under `PIPELINE_TFDS_MOCK=<data dir>`, the `dedupe` stage (`python -m pipeline dedupe`) reads TFDS through
TFDS' own `tfds.testing.mock_data`, with the metadata written in that data dir (tests/test_sources.py).

On PYTHONPATH only in the tests that set the variable; every other process is left alone.
"""

import os
import sys

if os.environ.get("PIPELINE_TFDS_MOCK") and sys.orig_argv[-2:] == ["pipeline", "dedupe"]:
    import tensorflow_datasets as tfds

    _MOCK = tfds.testing.mock_data(num_examples=int(os.environ.get("PIPELINE_TFDS_EXAMPLES", "12")),
                                   policy=tfds.testing.MockPolicy.USE_FILES, data_dir=os.environ["PIPELINE_TFDS_MOCK"])
    _MOCK.__enter__()  # for the whole process
