"""Fine-tuning speed of each backbone on a GPU, with Keras 3 on its JAX backend.

The lent GPU machine has JAX but no TensorFlow, so this builds each backbone as the pipeline does
(`build_model`: resizing, the backbone's own preprocessing, the base, a softmax head), with random
weights and every layer trainable (timm's training benchmark trains the whole net; the finetune
stage unfreezes only the top share, so it is faster than this), under the mixed_float16 policy, and
trains it with Adam on random uint8 images at --size px, batch --batch. One fit of one batch compiles
the train step; fits of 20 steps are then timed until --seconds have passed. Prints a markdown table
with the published PyTorch figures beside, and writes the rows to --out as JSON.

On the GPU machine (see BENCHMARKS.md, "GPU"): keras, optree and namex travel as wheels.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported; the pipeline's modules import it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.core.registry import get_backbone  # noqa: E402
from pipeline.networks.backbones import build_model  # noqa: E402

SIX = ["MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "InceptionV3", "ResNet101", "VGG19"]
# timm's RTX 3090 AMP training table (PyTorch, img/s), as issue 16 quotes it; it quotes none for MobileNetV3Large
PUBLISHED_RTX3090 = {"MobileNetV3Small": 5749, "MobileNetV2": 1832, "InceptionV3": 602, "ResNet101": 569, "VGG19": 352}
STEPS_PER_FIT = 20
N_CLASSES = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=SIX)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed training per backbone (default 4)")
    parser.add_argument("--precision", choices=["mixed_float16", "mixed_bfloat16", "float32"], default="mixed_float16")
    parser.add_argument("--out", type=Path, help="a JSON file for the rows")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)
    devices = _devices()
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, devices: {', '.join(devices)}; {args.size} px, "
          f"batch {args.batch}, {args.precision}, every layer trainable, random uint8 images\n")
    print("| backbone | compile (s) | img/s | timm RTX 3090 AMP img/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for name in args.backbones:
        rate, compile_seconds = train_rate(name, args.size, args.batch, args.seconds)
        published = PUBLISHED_RTX3090.get(name)
        rows.append({"backbone": name, "images_per_s": round(rate, 1), "compile_s": round(compile_seconds, 1),
                     "published_rtx3090": published})
        ratio = f"{rate / published:.2f}x" if published else "-"
        print(f"| {name} | {compile_seconds:.1f} | {rate:.0f} | {published or '-'} | {ratio} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"devices": devices, "keras": keras.__version__, "size": args.size,
                                        "batch": args.batch, "precision": args.precision, "rows": rows}, indent=2))


def train_rate(name: str, size: int, batch: int, seconds: float) -> tuple[float, float]:
    """Training images/s of the whole model after its first step, and the seconds that first step took."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.layers.Dense(N_CLASSES, activation="softmax", dtype="float32")], name="head")
    model = build_model(get_backbone(name), "none", size, head)
    model.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * STEPS_PER_FIT, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES, batch * STEPS_PER_FIT)
    start = time.perf_counter()
    model.fit(images[:batch], labels[:batch], batch_size=batch, verbose=0, shuffle=False)
    compile_seconds = time.perf_counter() - start
    timed, steps = 0.0, 0
    while timed < seconds:
        start = time.perf_counter()
        model.fit(images, labels, batch_size=batch, verbose=0, shuffle=False)  # ends on the loss: synchronised
        timed += time.perf_counter() - start
        steps += STEPS_PER_FIT
    return steps * batch / timed, compile_seconds


def _devices() -> list[str]:
    if keras.backend.backend() == "jax":
        import jax

        return [str(device) for device in jax.devices()]
    return [keras.backend.backend()]


if __name__ == "__main__":
    main()
