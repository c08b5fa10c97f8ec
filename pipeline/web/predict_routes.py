"""The upload API: the models' names and classes, and `POST /api/predict`, each model's answer per uploaded scan."""

import asyncio
import base64
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from pipeline.explain.overlays import gray, overlay_pixels, png_bytes
from pipeline.networks.inference import read_scans
from pipeline.web.models import Busy
from pipeline.web.state import ServedDep

log = logging.getLogger(__name__)
router = APIRouter()


class TooLarge(Exception):
    """The request body went past its byte budget."""


def budgeted(receive, budget: int):
    """An ASGI `receive` that raises TooLarge as soon as the body read so far passes `budget` bytes."""
    seen = 0

    async def counted():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > budget:
            raise TooLarge
        return message
    return counted


def read_upload(upload: UploadFile, sizes: set[int], channels: int) -> dict[int, np.ndarray] | str:
    """One upload decoded by the project's reader at each input size, or why it cannot be (the reader's words).

    The bytes go to a file of our own naming in a fresh temporary folder: no client-supplied name is opened.
    """
    with tempfile.TemporaryDirectory(prefix="upload-") as folder:
        path = Path(folder) / "scan"
        with path.open("wb") as file:
            shutil.copyfileobj(upload.file, file)
        pixels = {}
        for size in sizes:
            pixels[size], errors = read_scans([path], size, channels)
            if errors:
                return errors[path]
        return pixels


def data_url(png: bytes) -> str:
    """PNG bytes as a data: URL, for an <img> or a script."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def explanation(image: np.ndarray, heat: np.ndarray, explained: str) -> dict[str, str]:
    """One model's Grad-CAM of one scan for the API: the class it explains (the model's most likely), the scan as the
    model saw it and its map over it (`overlay_pixels`), both PNGs of the model's input side, as data: URLs."""
    return {"class": explained, "scan": data_url(png_bytes(gray(image))),
            "overlay": data_url(png_bytes(overlay_pixels(image, heat)))}


def explanations(decoded: list[dict[int, np.ndarray]], answers: dict, sizes: dict[str, int],
                 classes: tuple[str, ...]) -> list[dict[str, dict[str, str]]]:
    """Per readable upload (its pixels at each input size), each backbone's `explanation` from the worker's answer."""
    return [{name: explanation(pixels[sizes[name]][0], maps[index], classes[answers["classes"][name][index]])
             for name, maps in answers["maps"].items()} for index, pixels in enumerate(decoded)]


@router.get("/api/models")
async def model_names(served: ServedDep):
    return {"models": served.models.names, "classes": list(served.classes)}


@router.post("/api/predict")
async def predict(request: Request, served: ServedDep):
    """Per uploaded file (multipart field `file`), each model's probability per class, or that file's error; with
    `?explain=1` also each backbone's Grad-CAM of it (`explanation`)."""
    flag = request.query_params.get("explain", "0")
    if flag not in ("0", "1"):
        raise HTTPException(400, f"explain={flag!r}: give explain=1 for each model's Grad-CAM map, or 0")
    explain = flag == "1"
    limits, models, classes = served.limits, served.models, served.classes
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit():
        raise HTTPException(400, "bad Content-Length header")
    if int(declared) > limits.request_bytes:
        raise HTTPException(413, f"upload too large: {int(declared)} bytes, limit {limits.request_bytes}")
    try:
        form = await Request(request.scope, budgeted(request.receive, limits.request_bytes)).form(
            max_files=limits.files, max_fields=limits.files)
    except TooLarge:
        raise HTTPException(413, f"upload too large: over {limits.request_bytes} bytes") from None
    except ClientDisconnect:  # nobody to answer
        log.info("upload cut short: %s hung up", f"{request.client.host}:{request.client.port}"
                 if request.client else "the client")
        return Response(status_code=400)
    try:
        uploads = [value for value in form.getlist("file") if isinstance(value, UploadFile)]
        if not uploads:
            raise HTTPException(400, "send one or more images as multipart/form-data field 'file'")
        sizes = set(models.sizes.values())
        decoded = [await asyncio.to_thread(read_upload, upload, sizes, served.channels) for upload in uploads]
    finally:
        await form.close()
    good = [pixels for pixels in decoded if not isinstance(pixels, str)]
    answers = {}
    if good:
        try:
            answers = await served.batcher.submit({size: np.concatenate([pixels[size] for pixels in good])
                                                   for size in sizes}, explain)
        except Busy:
            return JSONResponse({"detail": "server busy: too many scans waiting for the models; retry shortly"},
                                status_code=503, headers={"Retry-After": "1"})
        if explain:
            explained = await asyncio.to_thread(explanations, good, answers, models.sizes, classes)
    results, index = [], 0
    for upload, pixels in zip(uploads, decoded):
        if isinstance(pixels, str):
            results.append({"file": upload.filename, "error": pixels})
            continue
        probabilities = {name: dict(zip(classes, map(float, values[index])))
                         for name, values in answers["probabilities"].items()}
        results.append({"file": upload.filename, "probabilities": probabilities})
        if explain:
            results[-1]["explanations"] = explained[index]
        index += 1
    if not good:
        detail = "; ".join(f"{result['file']}: {result['error']}" for result in results)
        return JSONResponse({"detail": detail, "files": results}, status_code=422)
    return {"files": results}

