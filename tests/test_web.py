"""The web app in Debian's Chromium and through its API, on tiny models in a project folder of its own."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import uvicorn
import yaml
from PIL import Image

from pipeline.__main__ import main as cli
from pipeline.core import paths
from pipeline.core.params import load_params
from pipeline.networks.inference import model_input, predict_scans
from pipeline.web import live, report
from pipeline.web.app import Limits, create_app
from pipeline.web.models import Batcher, Busy
from tests.bad_files import plant_bad_files
from tests.conftest import ROOT
from tests.test_evaluate import SIZE, tiny_model
from tests.web_project import BACKBONES, EPOCHS, append_epoch, write_project, write_scan

STAGES_SHOWN = 4 + 5 * len(BACKBONES) + 4  # synth to preprocess, weights to evaluate per backbone, the rest

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "localhost"}
MODELS = [*BACKBONES, "ensemble_mean", "ensemble_val_loss"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("web") / "repo")


def test_stage_states_come_from_dvc_lock_params_and_dvcs_rwlock(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    lock = {"schema": "2.0", "stages": {
        "plots_page": {"cmd": "python -m pipeline plots_page", "outs": [{"path": "plots/offline.html"}]},
        "train@VGG19": {"params": {"params.yaml": {"lr": params["lr"], "head": params["head"]}}},
        "train@ResNet101": {"params": {"params.yaml": {"lr": params["lr"] * 2}}},  # since changed
    }}
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    (project / "plots/offline.html").write_text("page")
    (project / "models/VGG19/head.keras").write_bytes(b"")
    (project / "models/ResNet101/head.keras").write_bytes(b"")
    writing = {str((project / paths.model_files("MobileNetV2").head).resolve()): {"pid": os.getpid(), "cmd": "dvc repro"},
               str((project / paths.model_files("VGG19").model).resolve()): {"pid": 2**22 + 1, "cmd": "gone"}}
    (project / paths.RWLOCK).parent.mkdir(parents=True)
    (project / paths.RWLOCK).write_text(json.dumps({"read": {}, "write": writing}))
    try:
        states = {row["stage"]: row["state"] for row in live.stage_states(project)}
    finally:
        for name in ("dvc.lock", "plots/offline.html", "models/VGG19/head.keras", "models/ResNet101/head.keras",
                     paths.RWLOCK):
            (project / name).unlink()
    assert states["plots_page"] == "done"
    assert states["train@VGG19"] == "done"
    assert states["train@ResNet101"] == "pending"
    assert states["train@MobileNetV2"] == "running"
    assert states["finetune@VGG19"] == "pending"  # its writer's process is gone
    assert list(states)[:2] == ["synth", "dedupe"] and len(states) == STAGES_SHOWN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(project) -> str:
    """The app on `project`, served on a free loopback port from a thread; its base URL."""
    app = create_app(project, load_params(project / "params.yaml"), Limits(request_bytes=2**20, files=4))
    port = free_port()
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    while not served.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    thread.join()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app that records every request it makes."""
    context = browser.new_context(base_url=server)
    page = context.new_page()
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    yield page
    context.close()


def test_page_loads_nothing_from_outside_loopback_and_shows_the_warnings(page):
    page.route(lambda url: urlsplit(url).hostname not in LOOPBACK, lambda route: route.abort())
    page.goto("/")
    page.wait_for_selector("#warnings .warning")
    page.wait_for_selector("div.curve svg .mark-line path", state="attached")
    page.wait_for_selector("#report table")
    warnings = page.locator("#warnings .warning").all_inner_texts()
    assert warnings[0].startswith("This is the synthetic demo") and "pretrained: false" in warnings[1]
    assert page.locator("#report img").count() >= 4
    page.wait_for_function("[...document.querySelectorAll('#report img')].every((img) => img.naturalWidth > 0)")
    hosts = {urlsplit(url).hostname for url in page.requests}
    assert hosts == {"127.0.0.1"}, page.requests
    assert page.locator("#stages li").count() == STAGES_SHOWN


def test_a_scan_dropped_on_the_page_gets_every_models_probabilities(page, project, server):
    scan = write_scan(project / "scan.jpg")
    page.goto("/")
    page.set_input_files("#files", str(scan))
    page.wait_for_selector(".prediction tr[data-model]")
    rows = page.locator(".prediction tr[data-model]")
    shown = {rows.nth(index).get_attribute("data-model"): [float(value) for value in rows.nth(index).locator(
        "td[data-class]").all_inner_texts()] for index in range(rows.count())}
    assert list(shown) == MODELS
    pixels = model_input([scan], SIZE)
    for index, backbone in enumerate(BACKBONES):
        np.testing.assert_allclose(shown[backbone], tiny_model(12 + 6 * index)(pixels)[0], atol=0.0015)
    np.testing.assert_allclose(shown["ensemble_mean"], np.mean([shown[name] for name in BACKBONES], axis=0),
                               atol=0.003)
    assert page.locator(".prediction svg").count() == 1


def test_a_new_epoch_reaches_the_chart_within_two_seconds(page, project):
    page.goto("/")
    chart = "div.curve[data-stage='head'][data-metric='loss']"
    page.wait_for_selector(f"{chart}[data-last-step='{EPOCHS - 1}']", state="attached")
    start = time.monotonic()
    for backbone in BACKBONES:
        append_epoch(project, "train", backbone, EPOCHS)
    page.wait_for_selector(f"{chart}[data-last-step='{EPOCHS}']", state="attached", timeout=2000)
    assert time.monotonic() - start < 2
    assert page.locator(chart).get_attribute("data-points") == str(2 * (EPOCHS + 1) * len(BACKBONES))


def post(server: str, files: list[tuple[str, bytes]], **options) -> httpx.Response:
    return httpx.post(f"{server}/api/predict", files=[("file", file) for file in files], timeout=30, **options)


def test_every_bad_upload_gets_a_4xx_with_its_reason_and_the_server_goes_on(server, tmp_path):
    reasons = {**plant_bad_files(tmp_path), "notes.txt": "not a readable image"}
    scan = write_scan(tmp_path / "good.jpg").read_bytes()
    for name, reason in reasons.items():
        answer = post(server, [(name, (tmp_path / name).read_bytes())])
        assert answer.status_code == 422, name
        assert reason in answer.json()["detail"] and answer.json()["detail"].startswith(name), answer.json()
        assert "Traceback" not in answer.text and str(tmp_path) not in answer.text
    too_big = post(server, [("big.jpg", scan + b"\0" * 2**20)])
    assert too_big.status_code == 413 and "too large" in too_big.json()["detail"]
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'
    chunked = httpx.post(f"{server}/api/predict", content=iter([part, *[b"x" * 2**16] * 20]), timeout=30,
                         headers={"content-type": "multipart/form-data; boundary=b"})  # no Content-Length
    assert chunked.status_code == 413 and "too large" in chunked.json()["detail"]
    too_many = post(server, [(f"{index}.jpg", scan) for index in range(5)])
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["detail"]
    for empty in (httpx.post(f"{server}/api/predict", data={"x": "1"}), httpx.post(f"{server}/api/predict")):
        assert empty.status_code == 400 and "field 'file'" in empty.json()["detail"]
    mixed = post(server, [("bad.jpg", b"no"), ("good.jpg", scan)])
    assert mixed.status_code == 200
    bad, good = mixed.json()["files"]
    assert bad == {"file": "bad.jpg", "error": "not a readable image (unknown or corrupt format)"}
    assert list(good["probabilities"]) == MODELS
    assert all(abs(sum(classes.values()) - 1) < 1e-5 for classes in good["probabilities"].values())


def test_a_full_queue_answers_busy():
    async def scenario():
        release = asyncio.Event()

        def slow(pixels):
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
            return {"m": pixels[1]}

        loop = asyncio.get_running_loop()
        batcher = Batcher(slow, max_waiting=1, max_batch=4)
        worker = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.submit({1: np.ones((1, 1))}))
        await asyncio.sleep(0.05)  # the worker took the first and waits in the model call
        second = asyncio.create_task(batcher.submit({1: np.full((2, 1), 2.0)}))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await batcher.submit({1: np.zeros((1, 1))})
        release.set()
        answers = await first, await second
        worker.cancel()
        return answers

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's event loop
        first, second = thread.submit(asyncio.run, scenario()).result()
    assert first["m"].tolist() == [[1.0]] and second["m"].tolist() == [[2.0], [2.0]]


def test_the_batch_after_a_concurrent_one_waits_for_its_clients_and_a_lone_client_never_waits():
    async def scenario():
        loop, sizes = asyncio.get_running_loop(), []

        def predict(pixels):
            sizes.append(len(pixels[1]))
            time.sleep(0.05)
            return {"m": pixels[1]}

        batcher = Batcher(predict, max_waiting=8, max_batch=8, window=10, max_wait_s=0.5)
        worker = asyncio.create_task(batcher.run())

        async def client(index: int, requests: int) -> list[float]:
            answers = []
            for step in range(requests):
                answers.append((await batcher.submit({1: np.full((1, 1), 10.0 * index + step)}))["m"].item())
                await asyncio.sleep(0.005 * (index + 1))  # answered together, the clients come back one by one
            return answers

        together = await asyncio.gather(*(client(index, 5) for index in range(4)))
        alone = []
        for _ in range(3):
            start = loop.time()
            await batcher.submit({1: np.zeros((1, 1))})
            alone.append(loop.time() - start)
        worker.cancel()
        return sizes, together, alone

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's event loop
        sizes, together, alone = thread.submit(asyncio.run, scenario()).result()
    assert together == [[10.0 * index + step for step in range(5)] for index in range(4)]
    assert sizes == [4] * 5 + [1] * 3  # without waiting for the clients, batches of 1 and 3 take turns
    assert alone[0] >= 0.5 and max(alone[1:]) < 0.5  # the demand of 4 waited max_wait_s once, then none


def test_concurrent_uploads_get_the_probabilities_predict_gives_each_scan(server, project, tmp_path):
    base = Image.open(write_scan(tmp_path / "base.jpg"))
    scans = []
    for index, gain in enumerate((0.4, 0.7, 1.0, 1.3, 1.6, 1.9)):  # brightness moves the tiny models' answers
        scans.append(tmp_path / f"scan{index}.png")
        base.point(lambda value, gain=gain: min(255, round(value * gain))).save(scans[-1])
    classes = load_params(project / "params.yaml").data.classes
    table = predict_scans(scans, {name: project / paths.model_files(name).model for name in BACKBONES}, classes)
    columns = [f"prob_{name}" for name in classes]
    with ThreadPoolExecutor(len(scans)) as pool:
        answers = list(pool.map(lambda scan: post(server, [(scan.name, scan.read_bytes())]), scans * 3))
    for scan, answer in zip(scans * 3, answers):
        probabilities = answer.json()["files"][0]["probabilities"]
        for backbone in BACKBONES:
            expected = table[(table.scan == str(scan)) & (table.backbone == backbone)][columns].to_numpy()[0]
            np.testing.assert_allclose([probabilities[backbone][name] for name in classes], expected, rtol=1e-6,
                                       err_msg=f"{scan.name}, {backbone}")


def test_serving_beyond_loopback_needs_allow_remote(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli(["serve", "--host", "0.0.0.0"]) == 1
    assert "--allow-remote" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["predict", "scan.jpg", "--port", "9000"])


def test_predict_reports_an_unreadable_scan_on_its_row_without_tensorflow_noise(project):
    write_scan(project / "scan.jpg")
    (project / "notes.jpg").write_text("not an image")
    done = subprocess.run([sys.executable, "-m", "pipeline", "predict", "scan.jpg", "notes.jpg"], cwd=project,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[1:-1]] == [["scan.jpg", backbone] for backbone in BACKBONES]
    assert lines[-1].split()[0] == "notes.jpg" and lines[-1].endswith("not a readable image (unknown or corrupt format)")
    assert done.stderr == ""


def test_experiments_are_read_from_dvc_exp_show_or_say_why_not(project):
    failed = report.experiments(project, tuple(BACKBONES))  # not a git repository: dvc exp show fails
    assert failed["rows"] == [] and "dvc exp show failed" in failed["note"]
    revision = {"rev": "a" * 40, "name": "sunny-lark", "data": {
        "params": {"params.yaml": {"data": {"lr": 0.01, "seed": 7}}},
        "metrics": {"metrics/eval/VGG19.json": {"data": {"balanced_accuracy": 0.41}}}}}
    row = report.experiment_row(revision, ("VGG19", "ResNet101"))
    assert row["name"] == "sunny-lark" and row["values"]["lr"] == 0.01
    assert row["values"]["VGG19"] == 0.41 and row["values"]["ResNet101"] is None
