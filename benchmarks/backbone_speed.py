"""Speed of each backbone: feature extraction, head training on cached features, and fine-tuning steps.

Random weights (`weights: none`) and synthetic gray images, on whatever devices TensorFlow sees.
For each backbone it measures:
- feature extraction images/s: the frozen base (with resizing and preprocessing) over --images images;
- the head trained for --epochs epochs on those cached features as the train stage trains it,
  against training the same head on the frozen base over the images every epoch (--epochs times
  one measured epoch of that model's fit): the saving that caching features buys; both class-
  weighted like the stage, both timed after a warm-up that traces them;
- inference images/s: the whole model (base and head) at batch --batch-size, at each --sizes;
- fine-tuning images/s: train steps of the full model (top of the base unfrozen, as the finetune
  stage does) at each --sizes, after one warm-up step.
Prints a markdown table.
"""

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.core.params import load_params
from pipeline.core.registry import get_backbone
from pipeline.networks.backbones import base_of, build_extractor, build_model
from pipeline.networks.finetune import unfreeze_top
from pipeline.networks.head import build_head, compile_head, feature_batches
from pipeline.networks.training import class_weights

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES = 4


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(params.backbones))
    parser.add_argument("--image-size", type=int, default=64, help="image size of features and head (default 64)")
    parser.add_argument("--images", type=int, default=2048,
                        help="images per feature pass (default 2048, about the demo's train features)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10, help="head epochs (default 10)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="inference and fine-tuning sizes")
    parser.add_argument("--finetune-batch", type=int, default=8, help="batch of the timed train steps (default 8)")
    parser.add_argument("--steps", type=int, default=3, help="timed inference and train steps after warm-up (default 3)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.images, args.image_size, args.image_size, 1)).repeat(3, -1).astype(np.float32)
    labels = rng.integers(0, N_CLASSES, args.images)
    print(f"{args.images} images of {args.image_size} px, batch {args.batch_size}, random weights; head "
          f"{params.head.units} for {args.epochs} epochs; fine-tuning batch {args.finetune_batch}, "
          f"{args.steps} timed steps after one warm-up step\n")
    sizes = args.sizes
    print("| backbone | features images/s | head, {e} epochs (s) | frozen base and head, {e} epochs (s) | ratio | "
          .format(e=args.epochs) + " | ".join(f"inference images/s at {size} px" for size in sizes) + " | "
          + " | ".join(f"fine-tune images/s at {size} px" for size in sizes) + " |")
    print("|---" + "|---:" * (4 + 2 * len(sizes)) + "|")
    for name in args.backbones:
        backbone = get_backbone(name)
        features, extract_seconds = _extract(backbone, images, args.batch_size)
        head_seconds = _train_head(features, labels, params, args.batch_size, args.epochs)
        base_seconds = args.epochs * _frozen_base_epoch(backbone, images, features, labels, params, args.batch_size)
        rates = [_inference_rate(backbone, params, features, size, args.batch_size, args.steps) for size in sizes]
        rates += [_fine_tune_rate(backbone, params, features, size, args.finetune_batch, args.steps) for size in sizes]
        print(f"| {name} | {args.images / extract_seconds:.0f} | {head_seconds:.1f} | {base_seconds:.0f} | "
              f"{base_seconds / head_seconds:.0f}x | " + " | ".join(f"{rate:.1f}" for rate in rates) + " |",
              flush=True)


def _extract(backbone, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    keras.utils.set_random_seed(0)
    extractor = build_extractor(backbone, "none", images.shape[1])
    extractor.predict_on_batch(images[:batch_size])  # warm-up: tracing
    start = time.perf_counter()
    features = np.concatenate([extractor.predict_on_batch(images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)])
    return features, time.perf_counter() - start


def _train_head(features: np.ndarray, labels: np.ndarray, params, batch_size: int, epochs: int) -> float:
    head = build_head(features, N_CLASSES, params.head)
    compile_head(head, params.lr)
    batches = _batches(features, labels, params, batch_size)
    head.fit(batches.take(1), epochs=1, verbose=0)  # warm-up: tracing
    start = time.perf_counter()
    head.fit(batches, epochs=epochs, verbose=0)
    return time.perf_counter() - start


def _frozen_base_epoch(backbone, images: np.ndarray, features: np.ndarray, labels: np.ndarray, params,
                       batch_size: int) -> float:
    """Seconds of one epoch training the head under the frozen base, on the images rather than cached features."""
    keras.utils.set_random_seed(0)
    model = build_model(backbone, "none", images.shape[1], build_head(features, N_CLASSES, params.head))
    base_of(model).trainable = False
    compile_head(model, params.lr)
    batches = _batches(images, labels, params, batch_size)
    model.fit(batches.take(1), epochs=1, verbose=0)  # warm-up: tracing
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    return time.perf_counter() - start


def _batches(inputs: np.ndarray, labels: np.ndarray, params, batch_size: int):
    """Shuffled, class-weighted batches as the train stage feeds its head."""
    weights = class_weights(labels, N_CLASSES, params.head.class_weight)
    return feature_batches({"features": inputs, "labels": labels}, batch_size, weights, seed=0)


def _inference_rate(backbone, params, features: np.ndarray, size: int, batch_size: int, steps: int) -> float:
    keras.utils.set_random_seed(0)
    model = build_model(backbone, "none", size, build_head(features, N_CLASSES, params.head))
    x = np.random.default_rng(1).uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
    model.predict_on_batch(x)  # warm-up: tracing
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    return steps * batch_size / (time.perf_counter() - start)


def _fine_tune_rate(backbone, params, features: np.ndarray, size: int, batch_size: int, steps: int) -> float:
    keras.utils.set_random_seed(0)
    model = build_model(backbone, "none", size, build_head(features, N_CLASSES, params.head))
    unfreeze_top(base_of(model), backbone.unfreeze)
    model.compile(optimizer=keras.optimizers.Adam(params.fine_tune_lr), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, batch_size)
    model.train_on_batch(x, y)  # warm-up: tracing
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
