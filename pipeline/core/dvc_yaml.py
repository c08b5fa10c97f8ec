"""The parts of dvc.yaml written from params.yaml's `backbones`, where DVC takes no `matrix`: the training
charts (every backbone on one chart per stage, split and metric) and the model registry (`artifacts:`).

Each sits between two marker comments; `python -m pipeline sync-dvc-yaml` rewrites what is between them
and leaves every other byte of dvc.yaml as it is.
"""

import math
import re

import yaml

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.registry import get_backbone

BEGIN = "# >>> {block}: written from params.yaml's backbones by `python -m pipeline sync-dvc-yaml`; do not edit\n"
END = "# <<< {block}\n"
TRAINING_STAGES = (("train", "Head"), ("finetune", "Fine-tuning"))  # dvclive's stage folder, the chart's word
SPLITS = (("train", "train"), ("eval", "val"))  # dvclive's split folder, the chart's word
METRICS = ("loss", "accuracy")


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


def generated_blocks(backbones: list[str]) -> dict[str, str]:
    """Each marked block's text: the training plots as items of the top-level `plots:` list, and `artifacts:`."""
    plots = yaml.safe_dump(training_plots(backbones), sort_keys=False, default_flow_style=False, width=math.inf)
    return {
        "training plots": "".join(f"  {line}\n" for line in plots.splitlines()),
        "artifacts": yaml.safe_dump(artifacts(backbones), sort_keys=False, default_flow_style=None, width=math.inf),
    }


def synced(text: str, backbones: list[str]) -> str:
    """dvc.yaml's text with each marked block rewritten for `backbones`, every other byte as it was."""
    for block, body in generated_blocks(backbones).items():
        begin, end = BEGIN.format(block=block), END.format(block=block)
        start, stop = text.find(begin), text.find(end)
        if text.count(begin) != 1 or text.count(end) != 1 or stop < start:
            raise PipelineError(f"{paths.DVC_YAML} needs its `# >>> {block}: ...` line and its `# <<< {block}` line "
                                f"around the {block}, once each and in that order; put them back (git log -p "
                                f"{paths.DVC_YAML} shows them)")
        text = text[:start + len(begin)] + body + text[stop:]
    return text
