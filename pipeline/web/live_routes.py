"""Training followed live: each stage's state and every epoch dvclive has logged (`live`)."""

import asyncio

from fastapi import APIRouter

from pipeline.web import live
from pipeline.web.state import ServedDep

router = APIRouter()


@router.get("/api/live")
async def live_state(served: ServedDep):
    stages = await asyncio.to_thread(live.stage_states, served.root)
    curves = await asyncio.to_thread(live.curves, served.root, served.params.backbones)
    return {"stages": stages, "curves": curves}
