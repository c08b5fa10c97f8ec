"""The package's layout holds: dvc.yaml's code deps cover what each stage imports, stages stay apart, and
inference pulls in no training code."""

import ast
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from pipeline.__main__ import main as cli
from pipeline.core import paths
from pipeline.core.dvc_yaml import synced
from pipeline.core.errors import PipelineError
from pipeline.core.registry import BACKBONES
from tests.conftest import ROOT

PACKAGE = ROOT / "pipeline"
TRAINING_MODULES = ("dvclive", "scmrepo", "pipeline.networks.head", "pipeline.networks.finetune",
                    "pipeline.networks.training", "pipeline.networks.features")


def module_file(name: str) -> Path | None:
    """The file of a `pipeline...` module or package, None for a name that is not one (an attribute)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The `pipeline...` modules a file imports anywhere in it (inside functions too), and their packages."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from package import module`
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "pipeline":
            found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {name for name in found if module_file(name)}


@cache
def closure(path: Path) -> frozenset[Path]:
    """Every project file that running `path` executes: itself and the files it imports, directly or not."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [module_file(name) for name in imported_modules(current)]
    return frozenset(seen)


def stage_entry(cmd: str) -> Path:
    """The module a `python -m pipeline <command> ...` line runs."""
    words = cmd.split()
    assert words[:3] == ["python", "-m", "pipeline"], cmd
    return PACKAGE / "stages" / f"{words[3]}.py"


@cache
def dvc_stages() -> dict[str, tuple[str, tuple[str, ...]]]:
    """dvc.yaml's stages, matrix expanded: name -> (cmd, deps)."""
    repo = Repo(str(ROOT))
    return {stage.addressing: (stage.cmd, tuple(str(dep.def_path) for dep in stage.deps))
            for stage in repo.index.stages}


def runs_code(path: Path) -> bool:
    """Whether a file holds more than a docstring (a package's bare `__init__.py` does not)."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def uncovered(files: frozenset[Path], deps: tuple[str, ...]) -> list[str]:
    """The files that run code (relative to the root) that no dep names, itself or through a folder above it."""
    covered = [ROOT / dep for dep in deps]
    return sorted(str(file.relative_to(ROOT)) for file in files
                  if runs_code(file) and not any(file == dep or dep in file.parents for dep in covered))


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_each_stage_depends_on_every_module_it_imports(stage):
    cmd, deps = dvc_stages()[stage]
    files = closure(stage_entry(cmd)) | closure(PACKAGE / "__main__.py")
    missing = uncovered(files, deps)
    assert not missing, f"stage {stage}: dvc.yaml deps miss {', '.join(missing)}"


# What each library package may import besides itself: the packages below it.
LAYERS = {
    "web": {"explain", "networks", "analysis", "imaging", "tables", "core"},
    "explain": {"networks", "mri", "analysis", "imaging", "tables", "core"},
    "sources": {"mri", "imaging", "tables", "core"},
    "analysis": {"tables", "core"},
    "networks": {"imaging", "tables", "core"},
    "mri": {"imaging", "tables", "core"},
    "tables": {"core"},
    "imaging": {"core"},
    "core": set(),
}


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_package_imports_only_the_packages_below_it(package):
    for path in sorted((PACKAGE / package).glob("*.py")):
        used = {name.split(".")[1] for name in imported_modules(path) if name.count(".") >= 1}
        above = used - LAYERS[package] - {package}
        assert not above, f"{path.relative_to(ROOT)} imports pipeline.{', pipeline.'.join(sorted(above))}"


def test_no_stage_module_imports_another():
    for path in sorted((PACKAGE / "stages").glob("*.py")):
        others = {name for name in imported_modules(path) if name.startswith("pipeline.stages.")}
        assert not others, f"{path.relative_to(ROOT)} imports {', '.join(sorted(others))}"


@pytest.mark.parametrize("module", ["pipeline.networks.inference", "pipeline.web.app"])
def test_inference_and_the_web_app_load_no_training_code(module):
    code = (f"import sys, {module}; "
            f"print(sorted(name for name in sys.modules if name.startswith({TRAINING_MODULES!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_every_output_path_in_dvc_yaml_is_named_in_the_paths_module():
    defined = {value for value in vars(paths).values() if isinstance(value, Path)}
    folders = defined | {path.parent for path in defined}
    repo = Repo(str(ROOT))
    for stage in repo.index.stages:
        for out in stage.outs:
            path = Path(str(out.def_path))
            assert path in defined or any(folder in path.parents for folder in folders), \
                f"stage {stage.addressing}: output {path} is in no folder of pipeline/core/paths.py"


def training_plot(stage: str, label: str, split: str, split_label: str, metric: str, backbones: list[str]) -> dict:
    """dvc.yaml's top-level plot of one stage, split and metric, every backbone on it."""
    files = {str(paths.live_plot(stage, backbone, split, metric)): metric for backbone in backbones}
    return {f"{label}, {split_label} {metric}": {"x": "step", "y": files}}


def artifact_entry(backbone: str) -> dict:
    """The `artifacts:` entry of dvc.yaml for a backbone's fine-tuned model (DVC's artifacts take no matrix)."""
    return {"path": str(paths.model_files(backbone).model), "type": "model"}


def assert_dvc_yaml_follows_backbones(project: Path) -> None:
    """dvc.yaml's training charts overlay params.yaml's backbones, one chart per stage, split and metric, and its model
    registry holds their models; on a mismatch the message names the command that fixes it."""
    declared = yaml.safe_load((project / "dvc.yaml").read_text())
    backbones = yaml.safe_load((project / "params.yaml").read_text())["backbones"]
    fix = "follow params.yaml's backbones: run `python -m pipeline sync-dvc-yaml`"
    expected = [training_plot(stage, label, split, split_label, metric, backbones)
                for stage, label in (("train", "Head"), ("finetune", "Fine-tuning"))
                for split, split_label in (("train", "train"), ("eval", "val"))
                for metric in ("loss", "accuracy")]
    found = [plot for plot in declared["plots"] if next(iter(plot)).startswith(("Head,", "Fine-tuning,"))]
    assert found == expected, f"dvc.yaml's training plots do not {fix}"
    for stage in ("train", "finetune"):
        assert "plots" not in declared["stages"][stage]
    artifacts = {name: {key: entry.get(key) for key in ("path", "type")} for name, entry in declared["artifacts"].items()}
    assert artifacts == {name: artifact_entry(name) for name in backbones}, f"dvc.yaml's artifacts do not {fix}"


def test_dvc_yaml_overlays_every_backbone_on_one_training_chart_per_metric_and_registers_its_model():
    backbones = yaml.safe_load((ROOT / "params.yaml").read_text())["backbones"]
    assert set(backbones) <= set(BACKBONES)
    assert_dvc_yaml_follows_backbones(ROOT)
    committed = (ROOT / "dvc.yaml").read_text()
    assert synced(committed, backbones) == committed, "run `python -m pipeline sync-dvc-yaml`"  # labels, desc too


def outside_generated_blocks(text: str) -> str:
    return re.sub(r"^# >>> .*?^# <<< [^\n]*\n", "", text, flags=re.MULTILINE | re.DOTALL)


def test_sync_dvc_yaml_rewrites_its_blocks_for_new_backbones_and_leaves_every_other_byte(tmp_path, monkeypatch):
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = (ROOT / "params.yaml").read_text()
    params = re.sub(r"^backbones: .*$", "backbones: [ConvNeXtTiny, MobileNetV3Small]", params, count=1, flags=re.MULTILINE)
    (tmp_path / "params.yaml").write_text(params.replace("\n  VGG19: {}", "\n  VGG19: {}\n  ConvNeXtTiny: {}", 1))
    monkeypatch.chdir(tmp_path)
    assert cli(["sync-dvc-yaml"]) == 0
    assert_dvc_yaml_follows_backbones(tmp_path)
    synced = (tmp_path / "dvc.yaml").read_text()
    assert outside_generated_blocks(synced) == outside_generated_blocks((ROOT / "dvc.yaml").read_text())
    assert yaml.safe_load(synced)["artifacts"]["ConvNeXtTiny"]["labels"] == ["alzheimer-mri", "keras", "convnext",
                                                                             "transfer-learning"]
    assert cli(["sync-dvc-yaml"]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == synced


def test_sync_dvc_yaml_without_its_markers_is_one_line_naming_them():
    unmarked = outside_generated_blocks((ROOT / "dvc.yaml").read_text())
    with pytest.raises(PipelineError, match=r"^dvc.yaml needs its `# >>> training plots: \.\.\.` line and its "
                                            r"`# <<< training plots` line around the training plots, once each"):
        synced(unmarked, ["VGG19"])


def test_the_gpu_benchmark_imports_only_what_the_gpu_machine_has():
    """benchmarks/gpu_finetune.py runs on the lent GPU machine: JAX and NumPy there, Keras carried, no TensorFlow."""
    imported = set()
    for path in closure(ROOT / "benchmarks/gpu_finetune.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert "pipeline" in imported and "keras" in imported
    assert imported - set(sys.stdlib_module_names) <= {"pipeline", "keras", "numpy", "jax"}, imported
