"""The one error type a stage raises for a problem the user can fix."""


class PipelineError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""
