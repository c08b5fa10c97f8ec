"""Stage `explain@<backbone>`: Grad-CAM maps of the fine-tuned model on a fixed, seeded sample of test scans.

Writes plots/explain/<backbone>/grid.png (classes by scans, true and predicted class on each) and
metrics/explain/<backbone>.json (the sample's size and, for the MRI archive, the maps' share inside the brain).
"""

import logging

from pipeline.analysis.charts import save
from pipeline.core import paths
from pipeline.core.files import write_json
from pipeline.core.params import Params
from pipeline.explain.sample import explain_sample, read_split, sample_per_class
from pipeline.imaging.tfrecords import read_meta
from pipeline.networks.inference import load_model

log = logging.getLogger(__name__)


def main(params: Params, backbone: str) -> None:
    model = load_model(paths.model_files(backbone).model, backbone)
    classes = read_meta(paths.TFRECORDS).classes
    images, labels, _ = read_split(paths.TFRECORDS, "test", params.evaluate.batch_size)
    rows = sample_per_class(labels, len(classes), params.explain.per_class, params.seed)
    figure, metrics = explain_sample(model, images, labels, rows, classes, brain=params.data.source == "archive",
                                     title=f"{backbone}: Grad-CAM, predicted class")
    save(figure, paths.explain_grid(backbone))
    write_json(paths.explain_metrics(backbone), {"backbone": backbone, **metrics})
    log.info("%s: %d test scans explained; attention inside the brain %s; wrote %s and %s", backbone,
             metrics["scans"], metrics.get("attention_inside_brain", "not measured (not the MRI archive)"),
             paths.explain_grid(backbone), paths.explain_metrics(backbone))
