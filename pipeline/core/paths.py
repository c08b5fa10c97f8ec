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


FOLDED = (TFRECORDS, FEATURES, FEATURE_METRICS, MODELS, LIVE, EVAL_METRICS, EVAL_PLOTS, AUDIT_METRICS, AUDIT_PLOTS)
NAMED_FILES = (FEATURE_METRICS, EVAL_METRICS)  # folders of one <backbone>.json each


def in_fold(path: Path, fold: int | str) -> Path:
    """Fold `fold`'s copy of a path under FOLDED (with split.folds > 1): fold 0 keeps the single split's path; fold
    i > 0 adds `fold-<i>`: after data/tfrecords or data/features (whose backbone folders are DVC outputs), in place of
    the extension of a <backbone>.json or metrics/audit.json (<backbone>/fold-<i>.json), else in the file's folder or
    under the folder. `fold` may be DVC's `${item.fold}` (`pipeline.core.dvc_yaml`)."""
    if str(fold) == "0":
        return path
    tag = f"fold-{fold}"
    for root in (TFRECORDS, FEATURES):
        if path == root or root in path.parents:
            return root / tag / path.relative_to(root)
    if path == AUDIT_METRICS or path.parent in NAMED_FILES:
        return path.with_suffix("") / f"{tag}{path.suffix}"
    return path.parent / tag / path.name if path.suffix else path / tag


def is_folded(path: Path) -> bool:
    """Whether the path depends on the fold: under one of FOLDED."""
    return any(path == root or root in path.parents for root in FOLDED)


def truth_file(archive: Path) -> Path:
    """Where an archive's ground truth sits: beside it, never inside."""
    return archive.parent / f"{archive.name}-truth.csv"


def weights_dir(backbone: str) -> Path:
    """The weights file the backbone's base starts from, and where it came from (`pipeline.networks.weights`)."""
    return WEIGHTS / backbone


def tfrecords_dir(fold: int = 0) -> Path:
    """The TFRecord shards of a fold's train, val and test (the single split's: fold 0)."""
    return in_fold(TFRECORDS, fold)


def features_dir(backbone: str, fold: int = 0) -> Path:
    """A backbone's cached embeddings and the base weights they came from (files: `pipeline.networks.features`)."""
    return in_fold(FEATURES / backbone, fold)


def feature_metrics(backbone: str, fold: int = 0) -> Path:
    """The seconds the features stage took, kept out of features_dir so train does not rerun for them."""
    return in_fold(FEATURE_METRICS / f"{backbone}.json", fold)


@dataclass(frozen=True)
class ModelFiles:
    """The files of one backbone's model folder."""
    head: Path  # the head trained on cached features (train)
    model: Path  # base and head fine-tuned (finetune); what evaluate, predict and serve load
    meta: Path  # what fine-tuning unfroze and kept

    @classmethod
    def in_dir(cls, folder: Path) -> "ModelFiles":
        return cls(head=folder / "head.keras", model=folder / "model.keras", meta=folder / "meta.json")


def model_files(backbone: str, fold: int = 0) -> ModelFiles:
    return ModelFiles.in_dir(in_fold(MODELS / backbone, fold))


def live_dir(stage: str, backbone: str, fold: int = 0) -> Path:
    """dvclive's folder for a training stage (`train` or `finetune`) of a backbone."""
    return in_fold(LIVE / stage / backbone, fold)


def live_metrics(stage: str, backbone: str, fold: int = 0) -> Path:
    """The summary dvclive writes in live_dir: the last epoch's metrics and what the stage added."""
    return live_dir(stage, backbone, fold) / "metrics.json"


def live_plot(stage: str, backbone: str, split: str, metric: str) -> Path:
    """dvclive's per-epoch table (columns `step` and the metric) of `split` (`train` or `eval`)."""
    return live_dir(stage, backbone) / "plots" / "metrics" / split / f"{metric}.tsv"


def eval_metrics(backbone: str, fold: int = 0) -> Path:
    return in_fold(EVAL_METRICS / f"{backbone}.json", fold)


def eval_plots(backbone: str, fold: int = 0) -> Path:
    return in_fold(EVAL_PLOTS / backbone, fold)


def predictions(backbone: str, fold: int = 0) -> Path:
    """One row per test image, written by evaluate and read by compare."""
    return eval_plots(backbone, fold) / "predictions.csv"


def val_predictions(backbone: str, fold: int = 0) -> Path:
    """One row per val image, written by evaluate; compare scores the ensembles' val figures from it."""
    return eval_plots(backbone, fold) / "val_predictions.csv"


def confusion(backbone: str, fold: int = 0) -> Path:
    """(actual, predicted) per test image, for DVC's confusion-matrix plot."""
    return eval_plots(backbone, fold) / "confusion.csv"


def roc(backbone: str, fold: int = 0) -> Path:
    """One-vs-rest ROC curve points per class."""
    return eval_plots(backbone, fold) / "roc.csv"


def explain_metrics(backbone: str) -> Path:
    """How many scans explain@<backbone> drew and, for MRI, its maps' share inside the brain."""
    return EXPLAIN_METRICS / f"{backbone}.json"


def explain_grid(backbone: str) -> Path:
    """The Grad-CAM overlays of explain@<backbone>: classes by scans."""
    return EXPLAIN_PLOTS / backbone / "grid.png"
