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
from pipeline.tables.features import (
    META_NAME,
    base_weights_file,
    load_features,
    read_features_meta,
    split_file,
)

CALIBRATION_IMAGES = 256  # train scans that set a random base's BatchNorm statistics
log = logging.getLogger(__name__)


def write_features(tfrecord_dir: Path, weights_dir: Path, out_dir: Path, backbone_name: str, params: Params,
                   shared_dir: Path | None = None) -> dict:
    """Write {train,val,test}.npz (train with params.augment.views augmented views), the base's weights
    and meta.json; return the meta. The base starts from the weights staged in `weights_dir`; images go
    through it params.evaluate.batch_size at a time.

    `shared_dir`: another fold's features of the same pretrained base, whose unaugmented embeddings (view 0) do not
    depend on the fold: each is looked up there by path, and only the scans it lacks and the augmented views go
    through the base.
    """
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
    same_base = {**describe(backbone, source["weights"], params.image_size), "weights_sha256": source["sha256"],
                 "dim": int(extractor.output.shape[-1]), "classes": list(data_meta.classes)}
    shared = shared_embeddings(shared_dir, same_base) if shared_dir else None
    out_dir.mkdir(parents=True, exist_ok=True)
    with replacing(base_weights_file(out_dir)) as partial:
        base_of(extractor).save_weights(partial)
    written, first_view = {}, 0 if shared is None else 1  # view 0 looked up where shared
    for split in SPLITS:
        views = 1 + params.augment.views if split == "train" else 1
        arrays = extract_split(extractor, params.augment, params.seed, tfrecord_dir, split, counts[split],
                               range(first_view, views), params.evaluate.batch_size)
        if shared is not None:
            plain = shared_view(extractor, shared, tfrecord_dir, split, params.evaluate.batch_size)
            arrays = {name: np.concatenate([plain[name], arrays[name]]) for name in arrays}
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
        **({"view_0_from": str(shared_dir)} if shared is not None else {}),
    }
    write_json(out_dir / META_NAME, meta)
    return meta


def extract_split(extractor: keras.Model, augment: AugmentParams, seed: int, tfrecord_dir: Path, split: str,
                  count: int, views: range, batch_size: int) -> dict[str, np.ndarray]:
    """Features, labels, paths, subjects and view numbers of a split's images, view by view (0: as stored).

    View v > 0 is augmented with seed + v, so each view differs, and none depends on the batch size.
    """
    parts = {name: [] for name in ("features", "labels", "paths", "subjects", "view")}
    dim = extractor.output.shape[-1]
    if count == 0:
        log.warning("split %s is empty; writing an empty %s.npz", split, split)
    for view in views if count else ():
        dataset = make_dataset(tfrecord_dir, split, batch_size, channels=None if view else 3, with_ids=True)
        if view:
            dataset = augment_dataset(dataset, augment, seed + view)  # returns 3 channels
        batches = tqdm(dataset, total=math.ceil(count / batch_size), unit="batch",
                       desc=f"features {split}" + (f" view {view}" if len(views) > 1 or view else ""))
        for images, labels, ids in batches:
            parts["features"].append(extractor.predict_on_batch(images))
            parts["labels"].append(labels.numpy())
            parts["paths"].append(_strings(ids["path"]))
            parts["subjects"].append(_strings(ids["subject"]))
            parts["view"].append(np.full(len(labels), view, dtype=np.int32))
    if not parts["labels"]:
        return empty_arrays(dim)
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    arrays["features"] = arrays["features"].astype(np.float32)
    return arrays


def shared_embeddings(shared_dir: Path, expected: dict) -> dict[str, np.ndarray]:
    """The unaugmented embeddings (view 0) of every split in `shared_dir`, by path, after checking that its meta.json
    records the same base (`expected`: backbone, weights and their sha256, sizes, classes)."""
    read_features_meta(shared_dir, expected)
    splits = [load_features(shared_dir, split) for split in SPLITS]
    plain = [arrays["view"] == 0 for arrays in splits]
    return {"features": np.concatenate([arrays["features"][rows] for arrays, rows in zip(splits, plain)]),
            "paths": np.concatenate([arrays["paths"][rows] for arrays, rows in zip(splits, plain)])}


def shared_view(extractor: keras.Model, shared: dict[str, np.ndarray], tfrecord_dir: Path, split: str,
                batch_size: int) -> dict[str, np.ndarray]:
    """View 0 of a split's images, in TFRecord order: each embedding looked up in `shared` by path, and those it lacks
    (copies of the subjects that the other fold held out of its train) put through the base."""
    row_of = {path: row for row, path in enumerate(shared["paths"])}
    parts = {name: [] for name in ("features", "labels", "paths", "subjects")}
    computed = 0
    for images, labels, ids in make_dataset(tfrecord_dir, split, batch_size, channels=3, with_ids=True):
        paths = _strings(ids["path"])
        rows = np.array([row_of.get(path, -1) for path in paths])
        features = shared["features"][np.maximum(rows, 0)]
        missing = rows < 0
        if missing.any():
            features[missing] = extractor.predict_on_batch(images.numpy()[missing])
            computed += int(missing.sum())
        parts["features"].append(features)
        parts["labels"].append(labels.numpy())
        parts["paths"].append(paths)
        parts["subjects"].append(_strings(ids["subject"]))
    count = sum(map(len, parts["labels"]))
    log.info("%s view 0: %d of %d embeddings looked up, %d computed", split, count - computed, count, computed)
    if not count:
        return empty_arrays(shared["features"].shape[1])
    return {**{name: np.concatenate(values) for name, values in parts.items()}, "view": np.zeros(count, np.int32)}


def empty_arrays(dim: int) -> dict[str, np.ndarray]:
    """The arrays of a split with no image."""
    return {"features": np.zeros((0, dim), np.float32), "labels": np.zeros(0, np.int32), "paths": np.zeros(0, str),
            "subjects": np.zeros(0, str), "view": np.zeros(0, np.int32)}


def _strings(tensor) -> np.ndarray:
    return np.array([value.decode() for value in tensor.numpy()])
