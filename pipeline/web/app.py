"""The FastAPI app: the routers by concern (the page, training live, the comparison, the upload API `POST
/api/predict`) over one project, loaded once, behind the host and cross-site guards."""

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from pipeline.analysis.plots_page import bundle
from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.imaging.tfrecords import read_meta
from pipeline.web import live_routes, page_routes, predict_routes, report_routes
from pipeline.web.guard import RefuseCrossSite, allowed_hosts
from pipeline.web.models import Batcher, Models
from pipeline.web.report import Experiments
from pipeline.web.state import Limits, Served

log = logging.getLogger(__name__)


def create_app(root: Path, params: Params, limits: Limits = Limits(), remote: tuple[str, ...] | None = None) -> FastAPI:
    """The app over the project at `root`, with its trained models loaded and warmed once, now; it answers requests
    named for loopback and the `remote` host names (`allowed_hosts`)."""
    trained_on = read_meta(root / paths.TFRECORDS)  # the source's classes and channels, as the models saw them
    models = Models(root, params.backbones, trained_on.classes)
    models.warm()
    served = Served(root=root, params=params, classes=trained_on.classes, channels=trained_on.channels, models=models,
                    batcher=Batcher(models.answer, limits.waiting, limits.batch),
                    experiments=Experiments(root, params.backbones), limits=limits,
                    vega=f"(() => {{\n{bundle()}\n}})();\n")

    @asynccontextmanager
    async def lifespan(_app):
        worker = asyncio.create_task(served.batcher.run())
        yield
        worker.cancel()
        served.experiments.close()

    app = FastAPI(title="honest-backbones", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served
    app.add_middleware(RefuseCrossSite)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(remote), www_redirect=False)  # outermost
    app.mount("/static", StaticFiles(directory=page_routes.STATIC), name="static")
    for routes in (page_routes, live_routes, report_routes, predict_routes):
        app.include_router(routes.router)

    @app.exception_handler(Exception)
    async def internal_error(_request, error):
        log.error("internal error", exc_info=error)
        return JSONResponse({"detail": "internal error; the server's log says more"}, status_code=500)

    return app
