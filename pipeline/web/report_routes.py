"""The comparison: the report and the experiments (`report`), and the charts and Grad-CAM grids the report links."""

import asyncio

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from pipeline.web import report
from pipeline.web.state import ServedDep

router = APIRouter()


@router.get("/api/comparison")
async def comparison(served: ServedDep):
    return {"report": await asyncio.to_thread(report.report, served.root), "experiments": await served.experiments.get()}


@router.get("/plots/compare/{name}")  # where reports/comparison.md's image links point from the page
async def chart(name: str, served: ServedDep):
    path = report.charts(served.root).get(name)
    if path is None:
        raise HTTPException(404, f"no chart named {name}")
    return FileResponse(path)


@router.get("/plots/explain/{backbone}/grid.png")  # the report's Grad-CAM grids, as linked from the page
async def explain_grid(backbone: str, served: ServedDep):
    path = report.explain_grids(served.root, served.params.backbones).get(backbone)
    if path is None:
        raise HTTPException(404, f"no Grad-CAM grid for {backbone}")
    return FileResponse(path)
