"""What the pipeline is doing now, read from the files DVC and dvclive write, never taking DVC's lock.

A stage is *running* when `.dvc/tmp/rwlock` (where DVC records, for the stage it runs, the
outputs it writes and the id of its process) names one of the stage's outputs under a live
process; *done* when dvc.lock records it with the params values params.yaml has now and every
output exists; *pending* otherwise. Code changes are not seen (that needs DVC's hashes).
"""

import csv
import json
from functools import lru_cache
from pathlib import Path

import psutil
import yaml
from dvc.dvcfile import ProjectFile
from dvc.exceptions import DvcException
from dvc.fs import LocalFileSystem
from dvc.repo import Repo
from dvc.stage.loader import StageLoader

from pipeline.core import paths

LIVE_STAGES = {"train": "head", "finetune": "fine-tuning"}  # dvclive's folder -> what the page calls it
LIVE_SPLITS = {"train": "train", "eval": "val"}
LIVE_METRICS = ("loss", "accuracy")
MISSING = object()


def lookup(tree: dict, dotted: str):
    """The value at a dotted key (`data.archive`), or MISSING."""
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def stamps(files: list[Path]) -> tuple:
    """Each file that exists, with its mtime and size: what changes when the file is rewritten."""
    found = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


@lru_cache(maxsize=4)
def expanded_stages(root: Path, _stamps: tuple) -> dict[str, list[str]]:
    """dvc.yaml's stages as DVC loads them (`${}` filled in from params.yaml, a matrix as `train@MobileNetV2`, ...): name
    -> the absolute paths of its outs, metrics and plots; none while dvc.yaml or params.yaml is missing, mid-write or invalid.
    Cached per `stamps` of the two files: DVC takes a few tenths of a second."""
    try:
        with Repo(str(root), uninitialized=True, fs=LocalFileSystem()) as repo:
            project_file = ProjectFile(repo, repo.fs.join(repo.root_dir, str(paths.DVC_YAML)))
            stages = list(StageLoader(project_file, project_file.contents).values())  # no lockfile: outs' paths only
    except DvcException:
        return {}
    return {stage.name: [out.fs_path for out in stage.outs] for stage in stages}


def read_yaml(path: Path) -> dict:
    """A YAML file's mapping, empty when it is missing or mid-write."""
    try:
        return yaml.load(path.read_text(), Loader=yaml.CSafeLoader) or {}  # libyaml: dvc.lock in 0.02 s, not 0.15
    except (OSError, yaml.YAMLError):
        return {}


def written_now(root: Path) -> set[Path]:
    """The paths DVC's rwlock says live processes are writing."""
    try:
        lock = json.loads((root / paths.RWLOCK).read_text())
    except (OSError, ValueError):
        return set()
    return {Path(path) for path, info in lock.get("write", {}).items() if psutil.pid_exists(info.get("pid", -1))}


def params_unchanged(recorded: dict, params: dict) -> bool:
    """Whether each params.yaml value that dvc.lock recorded for a stage is still the same."""
    return all(lookup(params, key) == value for key, value in recorded.get(str(paths.PARAMS), {}).items())


def stage_states(root: Path) -> list[dict]:
    """Each stage of dvc.yaml in order, with its state: done, running or pending."""
    params = read_yaml(root / paths.PARAMS)
    stages = expanded_stages(root.resolve(), stamps([root / paths.DVC_YAML, root / paths.PARAMS]))
    locked = read_yaml(root / paths.LOCK).get("stages", {})
    writing = written_now(root)
    states = []
    for name, outputs in stages.items():
        outs = [Path(out).resolve() for out in outputs]
        if any(out in writing for out in outs):
            state = "running"
        elif name in locked and params_unchanged(locked[name].get("params", {}), params) \
                and all(out.exists() for out in outs):
            state = "done"
        else:
            state = "pending"
        states.append({"stage": name, "state": state})
    return states


def read_curve(path: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) rows of one dvclive TSV; a missing file or a half-written last line gives fewer."""
    try:
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file, delimiter="\t"))
    except OSError:
        return []
    curve = []
    for row in rows:
        try:
            curve.append((int(row["step"]), float(row[metric])))
        except (KeyError, TypeError, ValueError):
            continue
    return curve


def curves(root: Path, backbones: tuple[str, ...]) -> list[dict]:
    """Every epoch dvclive has logged so far: stage, metric, backbone, split, step, value."""
    return [
        {"stage": label, "metric": metric, "backbone": backbone, "split": split_label, "step": step, "value": value}
        for stage, label in LIVE_STAGES.items()
        for metric in LIVE_METRICS
        for backbone in backbones
        for split, split_label in LIVE_SPLITS.items()
        for step, value in read_curve(root / paths.live_plot(stage, backbone, split, metric), metric)
    ]
