"""Trained models through DVC remotes (a local folder and an S3 server on loopback), and a kill mid-training."""

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BACKBONES, BUCKET, commit, copy_project, edit_params, ran_stages, run


def outputs(project: Path) -> dict[str, bytes]:
    """Every file under data/ and models/ (the stages' cached outputs) but .gitignore, by path."""
    paths = [path for folder in ("data", "models") for path in (project / folder).rglob("*")
             if path.is_file() and path.name != ".gitignore"]
    return {path.relative_to(project).as_posix(): path.read_bytes() for path in sorted(paths)}


def assert_nothing_to_do(clone: Path) -> None:
    """`dvc status` finds nothing changed and `dvc repro` runs no stage."""
    assert "Data and pipelines are up to date." in run(["dvc", "status"], clone)
    output = run(["dvc", "repro"], clone)
    assert ran_stages(output) == [] and "Data and pipelines are up to date." in output, output


def clone(project: Path, name: str = "clone") -> Path:
    """A git clone of the project beside it (so the same relative default remote)."""
    target = project.parent / name
    run(["git", "clone", "-q", str(project), str(target)], project.parent)
    return target


@pytest.fixture(scope="module")
def pushed(built_project, module_tmp) -> Path:
    """A copy of the built project whose outputs and run-cache were pushed to its default remote."""
    project = copy_project(built_project, module_tmp)
    output = run(["dvc", "push", "--run-cache"], project)
    assert "pushed" in output, output
    return project


def test_default_remote_is_a_folder_beside_the_repo(pushed):
    remote = pushed.parent / "dvc-remote"
    assert "remote = storage" in (pushed / ".dvc/config").read_text()
    assert any((remote / "files/md5").rglob("*")) and any((remote / "runs").rglob("*"))


def test_pull_into_a_fresh_clone_leaves_nothing_to_run(pushed):
    fresh = clone(pushed)
    assert outputs(fresh) == {}
    run(["dvc", "pull", "--run-cache"], fresh)
    assert outputs(fresh) == outputs(pushed) and len(outputs(fresh)) > 0
    assert any((fresh / ".dvc/cache/runs").rglob("*"))
    assert_nothing_to_do(fresh)


def test_models_are_registered_artifacts(pushed):
    backbone = BACKBONES[0]
    tag = ["tag", "-a", f"{backbone}@v0.1.0", "-m", f"Registering artifact {backbone} version v0.1.0"]
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *tag], pushed)  # as `gto register` does
    target = pushed.parent / "from-registry.keras"
    run(["dvc", "artifacts", "get", str(pushed), backbone, "-o", str(target)], pushed.parent)
    assert target.read_bytes() == (pushed / f"models/{backbone}/model.keras").read_bytes()


def test_push_and_pull_through_s3(built_project, tmp_path, s3_endpoint):
    project = copy_project(built_project, tmp_path)
    run(["dvc", "remote", "add", "--default", "s3", f"s3://{BUCKET}/demo"], project)
    run(["dvc", "remote", "modify", "--local", "s3", "endpointurl", s3_endpoint], project)
    commit(project, "s3 remote")
    run(["dvc", "push", "--run-cache"], project)
    fresh = clone(project)
    run(["dvc", "remote", "modify", "--local", "s3", "endpointurl", s3_endpoint], fresh)
    run(["dvc", "pull", "--run-cache"], fresh)
    assert not (fresh.parent / "dvc-remote").exists()
    for backbone in BACKBONES:
        for name in ("head.keras", "model.keras"):
            path = f"models/{backbone}/{name}"
            assert (fresh / path).read_bytes() == (project / path).read_bytes(), path
    assert outputs(fresh) == outputs(project)
    assert_nothing_to_do(fresh)


SLOW_SAVE = """
import sys, time
import pipeline.core.files as files
reproducible = files._make_reproducible
def slow(path):  # the partial file is written whole; hold it there until the test sends SIGTERM
    print("saving", path, flush=True)
    time.sleep(120)
    reproducible(path)
files._make_reproducible = slow
from pipeline.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def partial_files(project: Path) -> list[Path]:
    return sorted((project / "models").rglob(".partial-*"))


def test_sigterm_while_a_model_is_saved_keeps_the_older_model_and_leaves_nothing_partial(built_project, tmp_path):
    """A real `train` process, killed while save_model writes its head over an older one: the older head stays."""
    project = copy_project(built_project, tmp_path)
    backbone = BACKBONES[0]
    head = project / f"models/{backbone}/head.keras"
    edit_params(project, lr=0.0005)  # the run would write another head than the one in place
    older = head.read_bytes()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, "train", backbone], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in process.stdout:  # until Keras has written the partial file and save_model holds it
            seen.append(line)
            if line.startswith("saving "):
                break
        partial = partial_files(project)
        assert [path.name for path in partial] == [f".partial-{process.pid}-head.keras"], "".join(seen)
        with zipfile.ZipFile(partial[0]) as archive:  # written whole: the kill lands inside save_model
            assert "config.json" in archive.namelist()
        process.send_signal(signal.SIGTERM)
        output = "".join(seen) + process.communicate(timeout=60)[0]
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM == 143, output
    assert "Traceback" not in output, output
    assert head.read_bytes() == older, "the older head was changed"
    assert partial_files(project) == [], "partly written files left behind"
    run([sys.executable, "-m", "pipeline", "train", backbone], project)
    assert partial_files(project) == []
    with zipfile.ZipFile(head) as archive:
        assert archive.testzip() is None and "config.json" in archive.namelist()
    assert head.read_bytes() != older  # the rerun finished and saved its own head
