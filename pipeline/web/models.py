"""The trained models behind the upload API: loaded once, fed through a bounded queue that batches waiting requests."""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.analysis.comparison import ENSEMBLES, validation_loss
from pipeline.analysis.stats import ensemble, loss_weights
from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.explain.gradcam import GradCAM
from pipeline.networks.inference import inference_function, load_model

log = logging.getLogger(__name__)
MEAN, WEIGHTED = ENSEMBLES


class Models:
    """Every backbone's model in safe mode, and the ensembles' weights (exp(-val loss), as compare weighs them)."""

    def __init__(self, root: Path, backbones: tuple[str, ...], classes: tuple[str, ...]):
        self.classes = classes
        models = {name: load_model(root / paths.model_files(name).model, name) for name in backbones}
        self.infer = {name: inference_function(model) for name, model in models.items()}
        self.explainers = {name: GradCAM(model, traced=True) for name, model in models.items()}
        self.sizes = {name: model.input_shape[1] for name, model in models.items()}
        try:
            losses = np.array([validation_loss(root / paths.live_metrics("finetune", name), name) for name in backbones])
            self.weights = loss_weights(losses)
        except PipelineError as error:
            log.warning("no %s ensemble: %s", WEIGHTED, error)
            self.weights = None

    def warm(self) -> None:
        """Trace each model's inference for one image and then for a batch (the shape every later call reuses), and
        its Grad-CAM (once, for any number of images), so the first upload is answered as fast as the next."""
        for count in (1, 2):
            self.answer({size: np.zeros((count, size, size, 3), np.float32) for size in set(self.sizes.values())},
                        np.arange(count) == 0)

    @property
    def names(self) -> list[str]:
        """The models the API answers for: each backbone, then the ensembles."""
        return [*self.infer, MEAN, *([WEIGHTED] if self.weights is not None else [])]

    def predict(self, pixels: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        """Class probabilities (images x classes) per model name, for images at each input size the models take."""
        answers = {name: infer(tf.constant(pixels[self.sizes[name]])).numpy().astype(np.float64)
                   for name, infer in self.infer.items()}
        members = list(answers.values())
        answers[MEAN] = ensemble(members)
        if self.weights is not None:
            answers[WEIGHTED] = ensemble(members, self.weights)
        return answers

    def explain(self, pixels: dict[int, np.ndarray], wanted: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Per backbone, the Grad-CAM maps (images x side x side) of the images `wanted` (a boolean per image)
        marks, for each one's predicted class, and that class's index ("maps", "classes"); zero maps and class -1
        for the others, which are not explained."""
        maps, classes = {}, {}
        for name, explainer in self.explainers.items():
            images = pixels[self.sizes[name]]
            maps[name], classes[name] = np.zeros(images.shape[:3], np.float32), np.full(len(images), -1)
            if wanted.any():
                explained = explainer(images[wanted])
                maps[name][wanted], classes[name][wanted] = explained.maps, explained.classes
        return {"maps": maps, "classes": classes}

    def answer(self, pixels: dict[int, np.ndarray], wanted: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """What the queue's worker gives back: `predict`'s probabilities ("probabilities"), and `explain`'s maps and
        classes of the `wanted` images."""
        return {"probabilities": self.predict(pixels), **self.explain(pixels, wanted)}


class Busy(Exception):
    """The queue in front of the models is full."""


class Batcher:
    """A bounded queue of requests and one worker that runs the waiting ones (up to max_batch) as one model call.

    Clients that were just answered, or that queued while the models ran, are likely to send again: the next
    batch waits for as many requests as that (its `demand`), up to `window` times the last call's duration and
    never over `max_wait_s`. A lone client's demand is 1, so its requests never wait.
    """

    def __init__(self, answer: Callable[[dict[int, np.ndarray], np.ndarray], dict], max_waiting: int,
                 max_batch: int, window: float = 0.25, max_wait_s: float = 0.1):
        self.answer, self.max_batch = answer, max_batch
        self.window, self.max_wait_s = window, max_wait_s
        self.queue: asyncio.Queue = asyncio.Queue(max_waiting)

    async def submit(self, pixels: dict[int, np.ndarray], explain: bool = False) -> dict:
        """The models' answer for one request's images (size -> images), its rows only, with their maps when
        `explain`; or Busy when the queue is full."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((pixels, explain, future))
        except asyncio.QueueFull:
            raise Busy from None
        return await future

    async def gather(self, demand: int, wait_s: float) -> list:
        """The next batch: the first request, then up to `demand` (or more, already queued) within `wait_s`."""
        batch = [await self.queue.get()]
        try:
            async with asyncio.timeout(wait_s):
                while len(batch) < min(demand, self.max_batch):
                    batch.append(await self.queue.get())
        except TimeoutError:
            pass
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        loop = asyncio.get_running_loop()
        demand, wait_s = 1, 0.0
        while True:
            batch = await self.gather(demand, wait_s)
            requests = [pixels for pixels, _, _ in batch]
            counts = [len(next(iter(pixels.values()))) for pixels in requests]
            joined = {size: np.concatenate([pixels[size] for pixels in requests]) for size in requests[0]}
            wanted = np.repeat([explain for _, explain, _ in batch], counts).astype(bool)
            started = loop.time()
            try:
                answers = await asyncio.to_thread(self.answer, joined, wanted)
            except Exception as error:  # every waiting request gets it; the worker lives on
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                demand = len(batch) + self.queue.qsize()
                wait_s = min(self.window * (loop.time() - started), self.max_wait_s)
            ends = np.cumsum(counts)
            for (_, _, future), end, count in zip(batch, ends, counts):
                if not future.done():  # a client that left cancelled its future
                    future.set_result(rows(answers, end - count, end))


def rows(answers: dict, start: int, end: int) -> dict:
    """The rows start:end of every array in a (nested) dict of arrays by image."""
    return {name: rows(value, start, end) if isinstance(value, dict) else value[start:end]
            for name, value in answers.items()}
