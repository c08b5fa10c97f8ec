"""Copy stdin to stdout as it comes, line by line, dropping TensorFlow's start-up lines.

`python -m pipeline` runs it as a process of its own (`python -I stderr_filter.py`) between a command and
its stderr. It reads until the last writer is gone, so what a command wrote still reaches the user after
a native crash (SIGILL, SIGSEGV, abort) killed it. Standard library only: it starts in milliseconds.
"""

import os
import re
import sys

# What TensorFlow's C++ code prints at import whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.21).
TF_START_UP = re.compile(rb"oneDNN custom operations are on|All log messages before absl::InitializeLog")
LINE_END = re.compile(rb"(?<=[\r\n])")  # after \n, and after \r: progress bars redraw their line with it


def pass_lines(source: int, sink: int) -> None:
    """Write every line read from `source` to `sink` but TensorFlow's start-up lines, each once it ends."""
    pending = b""
    while chunk := os.read(source, 65536):
        *lines, pending = LINE_END.split(pending + chunk)
        _write(sink, lines)
    _write(sink, [pending])


def _write(sink: int, lines: list[bytes]) -> None:
    data = b"".join(line for line in lines if not TF_START_UP.search(line))
    while data:
        data = data[os.write(sink, data):]


if __name__ == "__main__":
    pass_lines(sys.stdin.fileno(), sys.stdout.fileno())
