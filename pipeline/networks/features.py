"""The frozen base's embeddings of every scan, cached per split (files: `pipeline.tables.features`)."""

import logging
import math
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from pipeline.core.files import replacing, write_json
from pipeline.core.params import SPLITS, AugmentParams, Params
from pipeline.core.registry import describe, get_backbone, input_size
from pipeline.imaging.augment import augment_dataset
from pipeline.imaging.tfrecords import make_dataset, read_meta
from pipeline.networks.backbones import base_of, build_extractor, calibrate_batchnorm
from pipeline.networks.weights import staged_weights
from pipeline.tables.features import META_NAME, base_weights_file, split_file

CALIBRATION_IMAGES = 256  # train scans that set a random base's BatchNorm statistics
log = logging.getLogger(__name__)


def write_features(tfrecord_dir: Path, weights_dir: Path, out_dir: Path, backbone_name: str, params: Params) -> dict:
    """Write {train,val,test}.npz (train with params.augment.views augmented views), the base's weights
    and meta.json; return the meta. The base starts from the weights staged in `weights_dir`; images go
    through it params.evaluate.batch_size at a time."""
    backbone = get_backbone(backbone_name)
    keras.utils.set_random_seed(params.seed)
    data_meta = read_meta(tfrecord_dir, {"image_size": params.image_size})
    weights_file, source = staged_weights(weights_dir, params.weights, input_size(backbone, params.image_size))
    extractor = build_extractor(backbone, str(weights_file) if weights_file else "none", params.image_size)
    if weights_file is None:
        images, _ = next(iter(make_dataset(tfrecord_dir, "train", CALIBRATION_IMAGES)))
        calibrated = calibrate_batchnorm(backbone, extractor, images)
        log.info("%s: random weights; %d BatchNorm layers' statistics set from %d train scans",
                 backbone.name, calibrated, len(images))
    counts = data_meta.counts
    out_dir.mkdir(parents=True, exist_ok=True)
    with replacing(base_weights_file(out_dir)) as partial:
        base_of(extractor).save_weights(partial)
    written = {}
    for split in SPLITS:
        views = 1 + params.augment.views if split == "train" else 1
        arrays = extract_split(extractor, params.augment, params.seed, tfrecord_dir, split, counts[split], views,
                               params.evaluate.batch_size)
        with replacing(split_file(out_dir, split)) as partial:
            np.savez(partial, **arrays)
        written[split] = len(arrays["labels"])
    meta = {
        **describe(backbone, source["weights"], params.image_size),
        "weights_sha256": source["sha256"],  # which file the base started from, pinned
        "dim": int(extractor.output.shape[-1]),
        "views": 1 + params.augment.views,
        "classes": list(data_meta.classes),
        "counts": written,
    }
    write_json(out_dir / META_NAME, meta)
    return meta


def extract_split(extractor: keras.Model, augment: AugmentParams, seed: int, tfrecord_dir: Path, split: str,
                  count: int, views: int, batch_size: int) -> dict[str, np.ndarray]:
    """Features, labels, paths, subjects and view numbers of a split's images, view by view (0: as stored).

    View v > 0 is augmented with seed + v, so each view differs, and none depends on the batch size.
    """
    parts = {name: [] for name in ("features", "labels", "paths", "subjects", "view")}
    dim = extractor.output.shape[-1]
    if count == 0:
        log.warning("split %s is empty; writing an empty %s.npz", split, split)
    for view in range(views if count else 0):
        dataset = make_dataset(tfrecord_dir, split, batch_size, channels=None if view else 3, with_ids=True)
        if view:
            dataset = augment_dataset(dataset, augment, seed + view)  # returns 3 channels
        batches = tqdm(dataset, total=math.ceil(count / batch_size), unit="batch",
                       desc=f"features {split}" + (f" view {view}" if views > 1 else ""))
        for images, labels, ids in batches:
            parts["features"].append(extractor.predict_on_batch(images))
            parts["labels"].append(labels.numpy())
            parts["paths"].append(_strings(ids["path"]))
            parts["subjects"].append(_strings(ids["subject"]))
            parts["view"].append(np.full(len(labels), view, dtype=np.int32))
    if not parts["labels"]:
        return {"features": np.zeros((0, dim), np.float32), "labels": np.zeros(0, np.int32),
                "paths": np.zeros(0, str), "subjects": np.zeros(0, str), "view": np.zeros(0, np.int32)}
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    arrays["features"] = arrays["features"].astype(np.float32)
    return arrays


def _strings(tensor) -> np.ndarray:
    return np.array([value.decode() for value in tensor.numpy()])
