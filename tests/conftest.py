"""Shared fixtures: tiny params, a tiny synthetic archive and a tiny DVC project, built once per test session."""

import contextlib
import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import filelock
import psutil
import pytest
import yaml

from pipeline.core.params import Params, parse_params
from pipeline.core.paths import truth_file
from pipeline.mri.synth import write_archive, write_truth

ROOT = Path(__file__).resolve().parents[1]
TINY_SYNTH = {
    "subjects": {"NonDemented": 3, "VeryMildDemented": 3, "MildDemented": 3, "ModerateDemented": 2},
    "slices": 8,
    "copies_per_class": 30,
    "duplicates": 3,
}
TINY_DEDUPE = {"slices_per_subject": 8}
PROJECT_FILES = ("dvc.yaml", "pipeline", "pretrained", ".dvc/plots", ".dvc/config", ".gitignore", ".dvcignore")
BACKBONES = ["MobileNetV3Small", "MobileNetV2"]
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "models"
TINY_TRAINING = {
    "backbones": BACKBONES,
    "epochs": 1,
    "fine_tune_epochs": 1,
    "finetune": {"max_train_images": 64},
    "augment": {"views": 1},
    "evaluate": {"bootstrap": 20, "latency_runs": 2},
}

SCRATCH_NEEDED = 1.2 * 2**30  # the most the suite holds in the temporary folder at once, measured: BENCHMARKS.md


def pytest_sessionstart(session):
    """One line first on the space and memory the suite has, so that a CI log shows them whatever happens next."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller writes the line
    scratch, memory = Path(tempfile.gettempdir()), psutil.virtual_memory().available
    free = shutil.disk_usage(scratch).free
    line = f"scratch space: {free / 2**30:.1f} GiB free in {scratch}; memory: {memory / 2**30:.1f} GiB available"
    if free < SCRATCH_NEEDED:
        line += f"; the suite holds up to {SCRATCH_NEEDED / 2**30:.1f} GiB there: expect 'No space left on device'"
    session.config.pluginmanager.get_plugin("terminalreporter").write_line(line)


def raw_params(**sections) -> dict:
    """The committed params.yaml as a dict, with `sections` merged over it one level deep."""
    return merge_params(yaml.safe_load((ROOT / "params.yaml").read_text()), sections)


def merge_params(raw: dict, sections: dict) -> dict:
    """raw with `sections` merged over it one level deep."""
    for key, value in sections.items():
        if isinstance(value, dict):
            raw[key] = {**raw[key], **copy.deepcopy(value)}
        else:
            raw[key] = value
    return raw


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    return parse_params(raw_params(synth=TINY_SYNTH, dedupe=TINY_DEDUPE, image_size=32))


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory, tiny_params) -> Path:
    """A small v1 archive with its truth file beside it (`<archive>-truth.csv`)."""
    root = tmp_path_factory.mktemp("raw") / "demo"
    truth = write_archive(root, tiny_params.data.classes, tiny_params.synth)
    write_truth(truth_file(root), truth)
    return root


def files_on_disk(root: Path) -> set[str]:
    """Every file under `root`, as '/'-separated paths relative to it."""
    return {(Path(folder) / name).relative_to(root).as_posix() for folder, _, names in os.walk(root) for name in names}


def run(args: list[str], cwd: Path, extra_env: dict | None = None) -> str:
    """Run a command (the venv's bin first on PATH, `extra_env` set) in cwd; assert it succeeds; return its output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(extra_env or {})}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def ran_stages(output: str) -> list[str]:
    """The stages DVC says it ran, in its own words ("Running stage '...'")."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def write_params(project: Path, **overrides) -> None:
    """Tiny params.yaml (two small backbones, 32 px, one epoch each), with `overrides` merged over it."""
    raw = raw_params(synth=TINY_SYNTH, dedupe=TINY_DEDUPE, image_size=32, **{**TINY_TRAINING, **overrides})
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def edit_params(project: Path, **sections) -> None:
    """Merge `sections` over the project's own params.yaml, one level deep."""
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(merge_params(yaml.safe_load(path.read_text()), sections), sort_keys=False))


def commit(project: Path, message: str) -> None:
    """Commit everything in the project's work tree."""
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", message], project)


def build_project(project: Path) -> None:
    """A git and DVC repository with the project's pipeline and tiny params, after `dvc repro`, committed."""
    init_project(project)
    run(["dvc", "repro"], project)
    commit(project, "baseline")


def init_project(project: Path) -> None:
    """A git and DVC repository with the project's pipeline and tiny params, committed, nothing run yet."""
    project.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy(source, project / name)
    write_params(project)
    commit(project, "project")  # dvclive, like any DVC project, needs a commit to stand on


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory) -> Iterator[Path]:
    """A folder for one module's shared projects, removed after its last test unless one of them failed: with
    pyproject's tmp_path_retention_policy for each test's own tmp_path, the suite's scratch space stays near what
    the largest module needs rather than the sum of them all (a CI machine's disk may be small)."""
    folder, failed = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]), request.session.testsfailed
    yield folder
    if request.session.testsfailed == failed:
        shutil.rmtree(folder, ignore_errors=True)  # as pytest removes a passed test's tmp_path


def copy_project(source: Path, parent: Path) -> Path:
    """A copy of the project at source as parent/repo (its default remote is then parent/dvc-remote)."""
    return Path(shutil.copytree(source, parent / "repo", symlinks=True))


@pytest.fixture(scope="session")
def built_project(tmp_path_factory, worker_id) -> Path:
    """The tiny project after `dvc repro`, built once for all xdist workers (the first to ask builds it, under a
    file lock; the others wait); tests that change it work on a copy_project of it."""
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    project, built = shared / "built" / "repo", shared / "built" / "done"
    with filelock.FileLock(shared / "built.lock"):
        if not built.exists():
            shutil.rmtree(project, ignore_errors=True)  # what a failed build in another worker left
            build_project(project)
            built.touch()
    return project


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on loopback that nothing listens on now."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def wait_for_port(port: int, server: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    """Return once the server accepts connections; fail with its log if it exits or never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"moto server exited with {server.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"moto server did not listen on 127.0.0.1:{port} within {seconds} s")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """An S3-protocol server (moto) on loopback with an empty bucket; its URL. Fake credentials in the env."""
    (port,), log = free_ports(1), tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server, log)
        url = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=url, region_name=S3_ENV["AWS_DEFAULT_REGION"],
                     aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in S3_ENV.items():
                patch.setenv(key, value)
            yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
