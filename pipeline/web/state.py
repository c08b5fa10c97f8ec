"""What the routes share, loaded once by `create_app` and kept on the app's state: the project, its models, the limits."""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from pipeline.core.params import Params
from pipeline.web.models import Batcher, Models
from pipeline.web.report import Experiments


@dataclass(frozen=True)
class Limits:
    """What one upload request may hold, and how many requests may wait for the models."""
    request_bytes: int = 16 * 2**20
    files: int = 16
    waiting: int = 32  # requests queued for the models; one more is answered 503
    batch: int = 16  # requests the worker runs as one model call


@dataclass(frozen=True)
class Served:
    """The project at `root` as the app serves it: its params, its trained models behind their queue, its experiments."""
    root: Path
    params: Params
    classes: tuple[str, ...]  # the source's classes and channels, as the models saw them
    channels: int
    models: Models
    batcher: Batcher
    experiments: Experiments
    limits: Limits
    vega: str  # Vega, Vega-Lite and vega-embed as the page's one script


def get_served(request: Request) -> Served:
    """The app's `Served`, for a route's parameter (`ServedDep`)."""
    return request.app.state.served


ServedDep = Annotated[Served, Depends(get_served)]
