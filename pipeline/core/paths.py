"""Where every stage's inputs and outputs live: the one place a path is written down.

Library functions take paths as arguments; only stage modules (and the CLI) read them from here.
`dvc.yaml` names the same paths for DVC (a test checks the two agree).
"""

from dataclasses import dataclass
from pathlib import Path

DEMO_ARCHIVE = Path("data/raw/demo")
INDEX = Path("data/interim/index.csv")
SOURCE_INFO = Path("data/interim/source.json")  # classes, channels, where the index's files are
SOURCE_IMAGES = Path("data/interim/images")  # a TFDS source's examples as files (empty for the other sources)
DEDUPE_METRICS = Path("metrics/dedupe.json")
SPLITS = Path("data/splits.csv")
SPLIT_METRICS = Path("metrics/split.json")
TFRECORDS = Path("data/tfrecords")
PRETRAINED = Path("pretrained")  # the user's own weights files (`weights: pretrained/<file>`), a weights-stage dep
WEIGHTS = Path("data/weights")
FEATURES = Path("data/features")
FEATURE_METRICS = Path("metrics/features")
MODELS = Path("models")
LIVE = Path("dvclive")
EVAL_METRICS = Path("metrics/eval")
EVAL_PLOTS = Path("plots/eval")
EXPLAIN_METRICS = Path("metrics/explain")
EXPLAIN_PLOTS = Path("plots/explain")
AUDIT_METRICS = Path("metrics/audit.json")
AUDIT_PLOTS = Path("plots/audit")
BASELINES_METRICS = Path("metrics/baselines.json")
SUMMARY = Path("metrics/summary.json")
COMPARE_PLOTS = Path("plots/compare")
REPORT = Path("reports/comparison.md")
PLOTS_TEMPLATE = Path("plots/offline.html")
LOCK = Path("dvc.lock")
DVC_YAML = Path("dvc.yaml")
RWLOCK = Path(".dvc/tmp/rwlock")  # DVC's record of the paths its running stages read and write
PARAMS = Path("params.yaml")


def truth_file(archive: Path) -> Path:
    """Where an archive's ground truth sits: beside it, never inside."""
    return archive.parent / f"{archive.name}-truth.csv"


def weights_dir(backbone: str) -> Path:
    """The weights file the backbone's base starts from, and where it came from (`pipeline.networks.weights`)."""
    return WEIGHTS / backbone


def features_dir(backbone: str) -> Path:
    """A backbone's cached embeddings and the base weights they came from (files: `pipeline.networks.features`)."""
    return FEATURES / backbone


def feature_metrics(backbone: str) -> Path:
    """The seconds the features stage took, kept out of features_dir so train does not rerun for them."""
    return FEATURE_METRICS / f"{backbone}.json"


@dataclass(frozen=True)
class ModelFiles:
    """The files of one backbone's model folder."""
    head: Path  # the head trained on cached features (train)
    model: Path  # base and head fine-tuned (finetune); what evaluate, predict and serve load
    meta: Path  # what fine-tuning unfroze and kept

    @classmethod
    def in_dir(cls, folder: Path) -> "ModelFiles":
        return cls(head=folder / "head.keras", model=folder / "model.keras", meta=folder / "meta.json")


def model_files(backbone: str) -> ModelFiles:
    return ModelFiles.in_dir(MODELS / backbone)


def live_dir(stage: str, backbone: str) -> Path:
    """dvclive's folder for a training stage (`train` or `finetune`) of a backbone."""
    return LIVE / stage / backbone


def live_metrics(stage: str, backbone: str) -> Path:
    """The summary dvclive writes in live_dir: the last epoch's metrics and what the stage added."""
    return live_dir(stage, backbone) / "metrics.json"


def live_plot(stage: str, backbone: str, split: str, metric: str) -> Path:
    """dvclive's per-epoch table (columns `step` and the metric) of `split` (`train` or `eval`)."""
    return live_dir(stage, backbone) / "plots" / "metrics" / split / f"{metric}.tsv"


def eval_metrics(backbone: str) -> Path:
    return EVAL_METRICS / f"{backbone}.json"


def eval_plots(backbone: str) -> Path:
    return EVAL_PLOTS / backbone


def predictions(backbone: str) -> Path:
    """One row per test image, written by evaluate and read by compare."""
    return eval_plots(backbone) / "predictions.csv"


def val_predictions(backbone: str) -> Path:
    """One row per val image, written by evaluate; compare scores the ensembles' val figures from it."""
    return eval_plots(backbone) / "val_predictions.csv"


def confusion(backbone: str) -> Path:
    """(actual, predicted) per test image, for DVC's confusion-matrix plot."""
    return eval_plots(backbone) / "confusion.csv"


def roc(backbone: str) -> Path:
    """One-vs-rest ROC curve points per class."""
    return eval_plots(backbone) / "roc.csv"


def explain_metrics(backbone: str) -> Path:
    """How many scans explain@<backbone> drew and, for MRI, its maps' share inside the brain."""
    return EXPLAIN_METRICS / f"{backbone}.json"


def explain_grid(backbone: str) -> Path:
    """The Grad-CAM overlays of explain@<backbone>: classes by scans."""
    return EXPLAIN_PLOTS / backbone / "grid.png"
