"""Several machines: one backbone per machine through a shared DVC remote, and one model on two workers."""

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from pipeline.core.errors import PipelineError
from pipeline.imaging.tfrecords import make_dataset
from pipeline.networks.features import write_features
from pipeline.networks.finetune import pick_strategy
from pipeline.networks.head import train_head
from pipeline.networks.training import KERAS_PATCHED, cluster_size, is_chief, keras_tf_trainer
from tests.conftest import BACKBONES, BUCKET, ROOT, commit, files_on_disk, free_ports, init_project, ran_stages, run
from tests.test_train import BACKBONE, no_weights, tiny_params, write_scans

EXAMPLES = ROOT / "examples/cluster"
WORKER_SECONDS = 300  # both workers of the two-worker test, start to finish

WORKER = """
import sys
from pathlib import Path
from pipeline.core.paths import ModelFiles
from pipeline.core.registry import get_backbone
from pipeline.networks.finetune import fine_tune
from tests.test_train import BACKBONE, tiny_params
tfrecords, features, machine = map(Path, sys.argv[1:])
meta = fine_tune(tfrecords, features, ModelFiles.in_dir(machine / "models"), machine / "live", get_backbone(BACKBONE),
                 tiny_params())
print("replicas", meta["replicas"], "epochs", meta["epochs_run"])
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Tiny TFRecords, their features and a trained head: (tfrecords, features dir, model dir)."""
    tmp = tmp_path_factory.mktemp("cluster-inputs")
    tfrecords = write_scans(tmp / "archive", tmp / "tfrecords", {"train": 20, "val": 8, "test": 8})
    write_features(tfrecords, no_weights(tmp), tmp / "features", BACKBONE, tiny_params())
    train_head(tmp / "features", tmp / "models" / "head.keras", tmp / "live", tiny_params())
    return tfrecords, tmp / "features", tmp / "models"


def tf_config(ports: list[int], index: int) -> str:
    """TF_CONFIG for worker `index` of a cluster of workers on loopback, no chief (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in sorted(files_on_disk(root))}


@pytest.mark.parametrize(("cluster", "task", "size", "chief"), [
    (None, None, 0, True),
    ({"worker": ["a:1"]}, {"type": "worker", "index": 0}, 1, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, 2, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, 2, False),
    ({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "chief", "index": 0}, 2, True),
    ({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "worker", "index": 0}, 2, False),
    ({"worker": ["a:1", "b:1"], "evaluator": ["c:1"]}, {"type": "evaluator", "index": 0}, 2, False),
], ids=["alone", "one-worker", "worker-0", "worker-1", "chief", "worker-0-beside-a-chief", "evaluator"])
def test_tf_config_says_how_many_train_and_who_writes(monkeypatch, cluster, task, size, chief):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert (cluster_size(), is_chief()) == (size, chief)
    if size < 2:
        assert not isinstance(pick_strategy(), tf.distribute.MultiWorkerMirroredStrategy)


@pytest.mark.parametrize("value", ["{not json", '{"cluster": {"worker": 3}}'], ids=["not-json", "not-a-list"])
def test_a_tf_config_tensorflow_cannot_read_is_one_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(PipelineError, match="^TF_CONFIG is not a cluster TensorFlow can read .*unset it"):
        is_chief()



def test_the_cluster_patch_refuses_with_one_line_a_keras_it_was_not_written_for(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker",
                                                                                                "index": 0}}))
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda: pytest.fail("a strategy was made"))
    build, reduce = keras_tf_trainer.TensorFlowTrainer._maybe_symbolic_build, keras_tf_trainer.reduce_per_replica
    with pytest.raises(PipelineError, match=r"^training on a cluster patches Keras 3\.15's TensorFlow trainer .* "
                                            r"this is Keras 3\.16\.0; install requirements\.txt's keras") as error:
        pick_strategy()
    assert "\n" not in str(error.value)
    assert (keras_tf_trainer.TensorFlowTrainer._maybe_symbolic_build, keras_tf_trainer.reduce_per_replica) == (
        build, reduce)


def test_requirements_pin_the_keras_the_cluster_patch_was_written_for():
    pins = re.findall(r"^keras==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pins == [keras.__version__]
    assert keras.__version__.split(".")[:2] == KERAS_PATCHED.split(".")


def test_two_workers_train_one_model_and_only_the_chief_writes(trained, tmp_path):
    """Two processes on loopback ports, one MultiWorkerMirroredStrategy: each its own folder, as two machines."""
    tfrecords, features, models = trained
    machines = [tmp_path / f"machine{index}" for index in range(2)]
    for machine in machines:
        shutil.copytree(models, machine / "models")
    before = snapshot(machines[1])
    ports = free_ports(len(machines))
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tfrecords), str(features), str(machine)], cwd=machine,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
                                     "PYTHONDONTWRITEBYTECODE": "1", "TF_CONFIG": tf_config(ports, index)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for index, machine in enumerate(machines)]
    try:
        logs = [worker.communicate(timeout=WORKER_SECONDS)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]
        assert "replicas 2 epochs 1" in log, log[-3000:]
    chief = files_on_disk(machines[0])
    assert {"models/head.keras", "models/model.keras", "models/meta.json", "live/metrics.json",
            "live/plots/metrics/train/loss.tsv"} <= chief, chief
    assert json.loads((machines[0] / "models/meta.json").read_text())["replicas"] == 2
    assert snapshot(machines[1]) == before, "the worker that is not the chief wrote in its folder"
    images = next(iter(make_dataset(tfrecords, "test", 8)))[0].numpy()
    probabilities = keras.models.load_model(machines[0] / "models/model.keras").predict_on_batch(images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


TRAINING = ("weights", "features", "train", "finetune")  # the matrix stages a machine runs for its backbone
TIMING = ("latency_ms", "latency_ms_batch_32", "training_seconds", "seconds", "fit_seconds")  # differ between runs


def restored_stages(output: str) -> list[str]:
    """The stages DVC says it took from the run-cache ("Stage '...' is cached - skipping run")."""
    return re.findall(r"^Stage '([^']+)' is cached - skipping run", output, flags=re.MULTILINE)


def trained_here(output: str) -> list[str]:
    return [stage for stage in ran_stages(output) if stage.split("@")[0] in TRAINING]


def joined(origin: Path, name: str, endpoint: str) -> Path:
    """A git clone of origin as another machine would make it, pointed at the shared S3 server."""
    clone = origin.parent / name
    run(["git", "clone", "-q", str(origin), str(clone)], origin.parent)
    run(["dvc", "remote", "modify", "--local", "shared", "endpointurl", endpoint], clone)
    return clone


def one_backbone_machine(clone: Path, backbone: str) -> str:
    """What a machine of the matrix runs (README, "Several machines"); DVC's output of the repro."""
    output = run(["dvc", "repro", "--pull", f"finetune@{backbone}"], clone)
    run(["dvc", "push", "--run-cache"], clone)
    run([sys.executable, str(EXAMPLES / "push_run_outputs.py")], clone)
    return output


def comparison(project: Path) -> dict:
    """metrics/summary.json without its timings, at any depth (the baselines' fits and fold study time theirs)."""
    return without_timings(json.loads((project / "metrics/summary.json").read_text()))


def without_timings(value):
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key not in TIMING}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def test_two_machines_train_a_backbone_each_and_a_third_trains_nothing(built_project, tmp_path, s3_endpoint):
    """Clones A and B (at once) train one backbone each and push their run-cache to one S3 remote; clone C runs
    `dvc repro --pull`: it trains nothing and compares what a single machine's `dvc repro` compares."""
    origin = tmp_path / "origin"
    init_project(origin)
    run(["dvc", "remote", "add", "--default", "shared", f"s3://{BUCKET}/cluster"], origin)
    commit(origin, "shared remote")
    first, second = BACKBONES
    machines = {backbone: joined(origin, f"machine-{backbone}", s3_endpoint) for backbone in BACKBONES}
    with ThreadPoolExecutor(len(machines)) as pool:  # both machines start before either pushed anything
        outputs = dict(zip(machines, pool.map(one_backbone_machine, machines.values(), machines)))
    for backbone, output in outputs.items():
        assert sorted(trained_here(output)) == sorted(f"{stage}@{backbone}" for stage in TRAINING), output
    third = joined(origin, "machine-compare", s3_endpoint)
    output = run(["dvc", "repro", "--pull"], third)  # pulls the run-cache, then the outputs of what it restores
    assert trained_here(output) == [], output
    assert {f"{stage}@{name}" for stage in TRAINING for name in (first, second)} <= set(restored_stages(output)), output
    assert {"evaluate@" + first, "evaluate@" + second, "compare"} <= set(ran_stages(output)), output
    for backbone in BACKBONES:
        path = f"plots/eval/{backbone}/predictions.csv"
        assert (third / path).read_bytes() == (built_project / path).read_bytes(), path
    assert comparison(third) == comparison(built_project)


MACHINE_COMMANDS = ('dvc repro --pull "finetune@$backbone"', "dvc push --run-cache",
                    "examples/cluster/push_run_outputs.py")


def test_slurm_array_is_bash_with_a_task_per_backbone():
    script = EXAMPLES / "slurm-backbones.sh"
    checked = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    text = script.read_text()
    array = re.search(r"^#SBATCH --array=0-(\d+)$", text, flags=re.MULTILINE)
    assert array and int(array.group(1)) + 1 == len(committed_backbones()), "--array must count params.yaml's backbones"
    assert all(command in text for command in MACHINE_COMMANDS)


def test_kubernetes_job_is_yaml_with_a_pod_per_backbone():
    (job,) = yaml.safe_load_all((EXAMPLES / "k8s-backbones.yaml").read_text())
    assert (job["apiVersion"], job["kind"], job["spec"]["completionMode"]) == ("batch/v1", "Job", "Indexed")
    assert job["spec"]["completions"] == len(committed_backbones()), "completions must count params.yaml's backbones"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    script = container["args"][0]
    checked = subprocess.run(["bash", "-n"], check=False, input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert all(command in script for command in MACHINE_COMMANDS)


def committed_backbones() -> list[str]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["backbones"]
