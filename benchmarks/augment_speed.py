"""Augmentation images/s on 1 and 2 cores: the old Keras layers, a batch at a time, against stateless ops in parallel.

Each measurement runs in a fresh process pinned to the first N cores (`taskset`), with
TensorFlow's intra- and inter-op threads and tf.data's thread pool set to N. Batches of
whole-number [0, 255] images sit in memory (tf.data's cache), so only the augmentation is timed;
params.yaml's `augment` settings. "keras, sequential" is the pipeline's augmentation until
2026-12-01 (Keras' RandomFlip, RandomRotation, RandomZoom, RandomContrast, RandomBrightness, one
batch at a time because the layers' seed state races under parallel calls), rebuilt here as the
baseline. The kinds alternate, and the median of --repeats runs counts. Besides images per
second of wall-clock time it gives images per CPU-second (the process's user and system time,
all threads): on a machine shared with other work the wall-clock rate falls with the load, while
the CPU-time rate says what a core delivers when it does run. Prints a markdown table.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

KINDS = ("keras, sequential", "stateless, parallel")
WARM_UP_BATCHES = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per run, after warm-up (default 30)")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3], help="channels of the images augmented")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "CORES", "CHANNELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, cores, channels = args.worker
        print(*_rates(KINDS[int(kind)], int(cores), int(channels), args.size, args.batch_size, args.batches))
        return
    print(f"{os.uname().machine}, {os.cpu_count()} cores, load average {_load()}; "
          f"{args.size} px, batch {args.batch_size}, {args.batches} batches per run, median of {args.repeats}\n")
    print("| cores | channels | " + " | ".join(f"{kind} images/s" for kind in KINDS) + " | "
          + " | ".join(f"{kind} images per CPU-second" for kind in KINDS) + " | runs (images/s) |")
    print("|---:|---:|" + "---:|" * 2 * len(KINDS) + "---|")
    for cores in args.cores:
        for channels in args.channels:
            runs, cpu_runs = {kind: [] for kind in KINDS}, {kind: [] for kind in KINDS}
            for _ in range(args.repeats):
                for index, kind in enumerate(KINDS):
                    wall, cpu = _run_worker(index, cores, channels, args)
                    runs[kind].append(wall)
                    cpu_runs[kind].append(cpu)
            medians = " | ".join(f"{statistics.median(rates[kind]):,.0f}"
                                 for rates in (runs, cpu_runs) for kind in KINDS)
            each = "; ".join(f"{kind.split(',')[0]} " + " / ".join(f"{rate:.0f}" for rate in runs[kind])
                             for kind in KINDS)
            print(f"| {cores} | {channels} | {medians} | {each} |", flush=True)
    print(f"\nload average after: {_load()}")


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _run_worker(kind: int, cores: int, channels: int, args) -> tuple[float, float]:
    command = ["taskset", "-c", f"0-{cores - 1}", sys.executable, __file__, "--worker", str(kind), str(cores),
               str(channels), "--size", str(args.size), "--batch-size", str(args.batch_size),
               "--batches", str(args.batches)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def _rates(kind: str, cores: int, channels: int, size: int, batch_size: int, batches: int) -> tuple[float, float]:
    """Images per second and per CPU-second of one kind of augmentation over `batches` batches, on `cores` threads."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    from pipeline.core.params import load_params
    from pipeline.imaging.augment import augment_dataset

    params = load_params(ROOT / "params.yaml").augment
    images = np.random.default_rng(0).integers(0, 256, (8 * batch_size, size, size, channels)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images), np.int32)))
    dataset = dataset.batch(batch_size).cache().repeat()
    if kind == "keras, sequential":
        augmenter = _keras_augmenter(params, seed=0)
        repeats = (1, 1, 1, 3 // channels)  # then 3 channels, as the pipeline gave them
        dataset = dataset.map(lambda batch, labels: (tf.tile(augmenter(batch, training=True), repeats), labels))
        dataset = dataset.prefetch(1)
    else:
        dataset = augment_dataset(dataset, params, seed=0)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    batches_out = iter(dataset.with_options(options))
    for _ in range(WARM_UP_BATCHES):
        next(batches_out)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(batches_out)
    images = batches * batch_size
    return images / (time.perf_counter() - start), images / (time.process_time() - start_cpu)


def _keras_augmenter(params, seed: int):
    """The pipeline's Keras augmenter until 2026-12-01 (pipeline/imaging/augment.py at 72df82f)."""
    import keras

    value_range = (0, 255)
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(params.rotation / 360, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomZoom(params.zoom, fill_mode="constant", seed=seed + 2),
        keras.layers.RandomContrast(params.contrast, value_range=value_range, seed=seed + 3),
        keras.layers.RandomBrightness(params.brightness, value_range=value_range, seed=seed + 4),
    ], name="augment")


if __name__ == "__main__":
    main()
