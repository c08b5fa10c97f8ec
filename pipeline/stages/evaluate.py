"""Stage `evaluate@<backbone>` (`evaluate_fold@<backbone>-<fold>` at that fold's paths): the fine-tuned model on the test
split, per image and per subject, and on val.

Writes metrics/eval/<backbone>.json (headline metrics, per class and per subject, 95% intervals
by subject bootstrap, model size and CPU latency; under `val`, the val split's headline metrics and
intervals, which models are chosen and tuned on) and, under plots/eval/<backbone>/, one row per test
image (predictions.csv, confusion.csv), one per val image (val_predictions.csv) and one-vs-rest ROC
curves (roc.csv).
"""

import json
import logging
import math
from pathlib import Path

from pipeline.analysis.metrics import evaluate_predictions, roc_curves, validation_scores
from pipeline.core import paths
from pipeline.core.errors import PipelineError, check_inputs, require_file
from pipeline.core.files import write_csv, write_json
from pipeline.core.params import Params
from pipeline.imaging.tfrecords import read_meta
from pipeline.networks.inference import inference_function, latency_ms, load_model, predict_split

LATENCY_BATCHES = (1, 32)
log = logging.getLogger(__name__)


def main(params: Params, backbone: str, fold: int = 0) -> None:
    files = paths.model_files(backbone, fold)
    tfrecords = paths.tfrecords_dir(fold)
    data_meta = read_meta(tfrecords, params.data.named_classes())
    classes = data_meta.classes  # the source's, as preprocess stored them
    meta = read_model_meta(files.meta, backbone, {"image_size": data_meta.image_size, "classes": data_meta.classes})
    model = load_model(files.model, backbone)
    infer = inference_function(model)
    predictions = predict_split(infer, tfrecords, "test", params.evaluate.batch_size, classes)
    report = evaluate_predictions(predictions, classes, params.evaluate.bootstrap, params.seed,
                                  ordinal=params.data.ordinal)
    val_predictions, report["val"] = predictions.iloc[:0], None
    if data_meta.counts["val"]:
        val_predictions = predict_split(infer, tfrecords, "val", params.evaluate.batch_size, classes)
        report["val"] = validation_scores(val_predictions, classes, params.evaluate.bootstrap, params.seed,
                                          ordinal=params.data.ordinal)
    else:
        log.warning("the val split has no images: no val scores, so compare needs compare.reference to name "
                    "the reference model when it compares several backbones")
    shape = (data_meta.image_size,) * 2 + (3,)
    report.update(
        backbone=backbone,
        pretrained=bool(meta["pretrained"]),
        fine_tuning_kept=bool(meta["fine_tuning_kept"]),
        params=int(model.count_params()),
        trainable_params=int(sum(math.prod(weight.shape) for weight in model.trainable_weights)),
        size_mb=files.model.stat().st_size / 1e6,
        latency_ms={f"batch_{n}": latency_ms(infer, (n, *shape), params.evaluate.latency_runs)
                    for n in LATENCY_BATCHES},
    )
    write_json(paths.eval_metrics(backbone, fold), report)
    write_csv(paths.predictions(backbone, fold), predictions)
    write_csv(paths.val_predictions(backbone, fold), val_predictions)
    write_csv(paths.confusion(backbone, fold), predictions[["label", "predicted"]].rename(columns={"label": "actual"}))
    probabilities = predictions[[f"prob_{name}" for name in classes]].to_numpy()
    write_csv(paths.roc(backbone, fold), roc_curves(predictions["label_index"].to_numpy(), probabilities, classes))
    if report["val"]:
        log.info("%s on %d val images of %d subjects: balanced accuracy %.3f", backbone, report["val"]["images"],
                 report["val"]["subjects"], report["val"]["balanced_accuracy"])
    log.info("%s on %d test images of %d subjects: accuracy %.3f, balanced accuracy %.3f, macro-F1 %.3f",
             backbone, report["test_images"], report["test_subjects"], report["accuracy"],
             report["balanced_accuracy"], report["macro_f1"])
    log.info("wrote %s and %s/", paths.eval_metrics(backbone, fold), paths.eval_plots(backbone, fold))


def read_model_meta(path: Path, backbone: str, expected: dict) -> dict:
    """The meta.json fine-tuning wrote beside the model, with the keys the report needs, made for `expected`
    (the TFRecords' image size and classes)."""
    require_file(path, f"finetune@{backbone}")
    meta = json.loads(path.read_text())
    missing = [key for key in ("pretrained", "fine_tuning_kept") if key not in meta]
    if missing:
        raise PipelineError(f"{path}: no {' or '.join(map(repr, missing))} key; "
                            f"run dvc repro finetune@{backbone} again")
    check_inputs(path, meta, expected, f"finetune@{backbone}")
    return meta
