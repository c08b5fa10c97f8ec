"""The page and the one script it loads, both from this machine."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from pipeline.web.state import ServedDep

STATIC = Path(__file__).with_name("static")
router = APIRouter()


@router.get("/")
async def page():
    return FileResponse(STATIC / "index.html")


@router.get("/vendor/vega.js")
async def vega_bundle(served: ServedDep):
    return Response(served.vega, media_type="text/javascript")
