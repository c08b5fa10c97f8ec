"""The parts of dvc.yaml written from params.yaml, where DVC takes no `matrix`: from `backbones`, the training
charts (every backbone on one chart per stage, split and metric) and the model registry (`artifacts:`); from
`split.folds`, the stages of folds 1 to k - 1 (none for k = 1), each a copy of a stage of the single split, which is
fold 0, with its fold's paths (`pipeline.core.paths.in_fold`), `--fold` and a `fold` axis in its matrix (and, where
`weights` is pretrained, fold 0's features as a dep of the others': `shares_embeddings`).

Each sits between two marker comments; `python -m pipeline sync-dvc-yaml` rewrites what is between them
and leaves every other byte of dvc.yaml as it is.
"""

import math
import re
from pathlib import Path

import yaml

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.registry import get_backbone

BEGIN = "# >>> {block}: written from params.yaml's {source} by `python -m pipeline sync-dvc-yaml`; do not edit\n"
END = "# <<< {block}\n"
TRAINING_STAGES = (("train", "Head"), ("finetune", "Fine-tuning"))  # dvclive's stage folder, the chart's word
SPLITS = (("train", "train"), ("eval", "val"))  # dvclive's split folder, the chart's word
METRICS = ("loss", "accuracy")
FOLD_STAGES = ("features", "train", "finetune", "evaluate", "audit")  # what depends on the fold's split
SOURCES = {"training plots": "backbones", "artifacts": "backbones", "fold stages": "split.folds"}
VARIABLE = re.compile(r"\$\{[^}]*\}")


def training_plots(backbones: list[str]) -> list[dict]:
    """The top-level plots of the training curves: one per stage, split and metric, each backbone a line on it."""
    return [{f"{label}, {split_label} {metric}": {"x": "step", "y": {
        str(paths.live_plot(stage, backbone, split, metric)): metric for backbone in backbones}}}
        for stage, label in TRAINING_STAGES for split, split_label in SPLITS for metric in METRICS]


def artifacts(backbones: list[str]) -> dict:
    """DVC's model registry: each backbone's fine-tuned model, described and labelled by its family."""
    return {"artifacts": {backbone: {
        "path": str(paths.model_files(backbone).model),
        "type": "model",
        "desc": f"{backbone} base and trained head, fine-tuned on the subject-level split; input [0, 255] pixels",
        "labels": ["alzheimer-mri", "keras", family(backbone), "transfer-learning"],
    } for backbone in backbones}}


def family(backbone: str) -> str:
    """A backbone's family: the folder of Keras' download site without its version (mobilenet_v3, vgg19 -> mobilenet,
    vgg)."""
    return re.sub(r"\d+$", "", get_backbone(backbone).weights_folder.split("_")[0])


def folded_path(path: str) -> str:
    """A dvc.yaml path of fold 0 as fold `${item.fold}`'s, DVC's variables kept; paths outside paths.FOLDED as they
    are (the archive, the weights, the code)."""
    variables = VARIABLE.findall(path)
    plain = Path(VARIABLE.sub(lambda match: f"VARIABLE{variables.index(match.group())}", path))
    if not paths.is_folded(plain):
        return path
    folded = paths.in_fold(plain, "FOLD").as_posix()
    for position, variable in enumerate(variables):
        folded = folded.replace(f"VARIABLE{position}", variable)
    return folded.replace("fold-FOLD", "fold-${item.fold}")


def folded_entry(entry: str | dict) -> str | dict:
    """An entry of deps, outs, metrics or plots, its path as folded_path's."""
    if isinstance(entry, str):
        return folded_path(entry)
    return {folded_path(path): options for path, options in entry.items()}


def fold_stage(stage: dict, folds: int) -> dict:
    """A stage of fold 0 (the single split) as the stages of folds 1 to `folds` - 1: a `fold` axis in its matrix."""
    matrix = {**stage.get("matrix", {}), "fold": list(range(1, folds))}
    folded = {"matrix": matrix, "cmd": stage["cmd"] + " --fold ${item.fold}"}
    for key in ("deps", "params", "outs", "metrics", "plots"):
        if key in stage:
            folded[key] = stage[key] if key == "params" else [folded_entry(entry) for entry in stage[key]]
    return folded


def folded_stage_name(stage: str) -> str:
    """The name under which `sync-dvc-yaml` writes a single-split stage's copy for folds 1 to k - 1."""
    return f"{stage}_fold"


def backbone_stage(stage: str, backbone: str, fold: int) -> str:
    """DVC's name of a backbone's stage in a fold: `<stage>@<backbone>` for fold 0, `<stage>_fold@<backbone>-<fold>`
    after (the matrix's items, backbone then fold, joined by DVC)."""
    return f"{folded_stage_name(stage)}@{backbone}-{fold}" if fold else f"{stage}@{backbone}"


def shares_embeddings(weights: str) -> bool:
    """Whether folds 1 to k - 1 take their unaugmented embeddings from fold 0's features: with pretrained weights they
    do not depend on the fold; with `none`, a random base's BatchNorm statistics come from the fold's train scans."""
    return weights != "none"


def fold_stages(text: str, folds: int, weights: str) -> dict:
    """The stages `<stage>_fold@...` of folds 1 to `folds` - 1, from dvc.yaml's stages of the single split."""
    if folds == 1:
        return {}
    stages = yaml.safe_load(text)["stages"]
    folded = {folded_stage_name(name): fold_stage(stages[name], folds) for name in FOLD_STAGES}
    if shares_embeddings(weights):
        folded[folded_stage_name("features")]["deps"].insert(0, stages["features"]["outs"][0])
    return folded


def generated_blocks(text: str, backbones: list[str], folds: int, weights: str) -> dict[str, str]:
    """Each marked block's text: the training plots as items of the top-level `plots:` list, `artifacts:`, and the
    fold stages as entries of `stages:`."""
    plots = yaml.safe_dump(training_plots(backbones), sort_keys=False, default_flow_style=False, width=math.inf)
    stages = fold_stages(text, folds, weights)
    stages_text = yaml.safe_dump(stages, sort_keys=False, default_flow_style=False, width=math.inf) if stages else ""
    return {
        "training plots": "".join(f"  {line}\n" for line in plots.splitlines()),
        "artifacts": yaml.safe_dump(artifacts(backbones), sort_keys=False, default_flow_style=None, width=math.inf),
        "fold stages": "".join(f"  {line}\n" for line in stages_text.splitlines()),
    }


def check_fold_stages(text: str, folds: int, weights: str) -> None:
    """Stop unless dvc.yaml's text has the stages of folds 1 to `folds` - 1 that sync-dvc-yaml writes for `weights`."""
    begin, end = BEGIN.format(block="fold stages", source=SOURCES["fold stages"]), END.format(block="fold stages")
    written = text[text.find(begin) + len(begin):text.find(end)] if begin in text and end in text else None
    if written != generated_blocks(text, [], folds, weights)["fold stages"]:
        raise PipelineError(f"{paths.DVC_YAML} has no stages for split.folds = {folds} and weights = {weights}: run "
                            "`python -m pipeline sync-dvc-yaml`, then `dvc repro` (or `dvc exp run`) again")


def synced(text: str, backbones: list[str], folds: int = 1, weights: str = "none") -> str:
    """dvc.yaml's text with each marked block rewritten for `backbones`, `folds` and `weights`, every other byte as it
    was."""
    for block, body in generated_blocks(text, backbones, folds, weights).items():
        begin, end = BEGIN.format(block=block, source=SOURCES[block]), END.format(block=block)
        start, stop = text.find(begin), text.find(end)
        if text.count(begin) != 1 or text.count(end) != 1 or stop < start:
            raise PipelineError(f"{paths.DVC_YAML} needs its `# >>> {block}: ...` line and its `# <<< {block}` line "
                                f"around the {block}, once each and in that order; put them back (git log -p "
                                f"{paths.DVC_YAML} shows them)")
        text = text[:start + len(begin)] + body + text[stop:]
    return text
