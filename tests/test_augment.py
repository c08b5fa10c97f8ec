"""The augmented stream: stateless seeds per image, parallel and in order, 1 or 3 channels, each op as asked."""

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline.core.params import SPLITS, AugmentParams, parse_params
from pipeline.imaging.augment import augment_dataset, augment_images, draw
from pipeline.imaging.tfrecords import (
    ID_FIELDS,
    TFRecordsMeta,
    encode_image,
    make_dataset,
    serialize_example,
    write_meta,
    write_shards,
)
from pipeline.networks.finetune import train_stream
from tests.conftest import raw_params

SIZE = 32
ON = parse_params(raw_params()).augment  # params.yaml's
OFF = ON.model_copy(update={"flip": False, "rotation": 0, "zoom": 0, "contrast": 0, "brightness": 0})


def scans(count: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Whole-number [0, 255] images, as the TFRecords reader gives them."""
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, channels)).astype(np.float32)


def stream(images: np.ndarray, params: AugmentParams = ON, seed: int = 0, batch_size: int = 4,
           threads: int | None = None) -> np.ndarray:
    """The augmented images of `images` in batches, as one array; `threads` caps tf.data's thread pool."""
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(len(images)))).batch(batch_size)
    augmented = augment_dataset(dataset, params, seed)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        augmented = augmented.with_options(options)
    batches = list(augmented.as_numpy_iterator())
    assert np.concatenate([labels for _, labels in batches]).tolist() == list(range(len(images)))  # in order
    return np.concatenate([batch for batch, _ in batches])


def test_same_seed_same_bytes_and_other_seeds_differ():
    images = scans(24)
    first = stream(images, seed=5)
    assert first.tobytes() == stream(images, seed=5).tobytes()
    other = stream(images, seed=6)
    assert all(not np.array_equal(a, b) for a, b in zip(first, other))  # every image drawn afresh


def test_parallel_calls_one_thread_and_any_batch_size_give_the_same_bytes():
    """Image i depends on (seed, i) only: not on how many map calls run at once, nor on the batching."""
    images = scans(30)
    parallel = stream(images, batch_size=4)
    one_thread = stream(images, batch_size=4, threads=1)
    assert one_thread.tobytes() == parallel.tobytes()
    assert stream(images, batch_size=7).tobytes() == parallel.tobytes()
    by_hand = np.concatenate([augment_images(tf.constant(images[i:i + 8]), draw(0, tf.range(i, i + 8, dtype=tf.int64)),
                                             ON).numpy() for i in range(0, 24, 8)])  # eager, one batch at a time
    assert by_hand.tobytes() == parallel[:24, ..., :1].tobytes()


def test_gray_is_augmented_once_and_repeated_to_three_channels():
    images = scans(8)
    gray = stream(images)
    assert gray.shape == (8, SIZE, SIZE, 3)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    assert gray.tobytes() == stream(images.repeat(3, axis=-1)).tobytes()


def test_rgb_channels_get_the_same_draws_each_as_its_own_gray_image():
    rgb = scans(8, channels=3)
    out = stream(rgb)
    assert out.shape == rgb.shape and not np.array_equal(out[..., 0], out[..., 1])
    for channel in range(3):
        assert out[..., channel].tobytes() == stream(rgb[..., channel:channel + 1])[..., 0].tobytes()


def test_other_channel_counts_are_refused():
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, SIZE, SIZE, 2), np.float32)).batch(2)
    with pytest.raises(ValueError, match="1- or 3-channel images, got 2"):
        augment_dataset(dataset.map(lambda images: (images, 0)), ON, 0)


def test_all_params_zero_leave_the_images_as_they_are():
    images = scans(8)
    assert stream(images, OFF).tobytes() == images.repeat(3, axis=-1).tobytes()


def only(**switch) -> AugmentParams:
    return OFF.model_copy(update=switch)


def test_flip_alone_mirrors_about_half_the_images_and_changes_nothing_else():
    images = scans(64)
    out = stream(images, only(flip=True))[..., :1]
    mirrored = np.array([np.array_equal(a, b[:, ::-1]) for a, b in zip(out, images)])
    kept = np.array([np.array_equal(a, b) for a, b in zip(out, images)])
    assert (mirrored | kept).all() and 16 < mirrored.sum() < 48


def test_brightness_alone_shifts_each_image_by_one_delta_within_its_range():
    images = np.clip(scans(64), 64, 191)  # 0.2 of 255 either way never clips
    out = stream(images, only(brightness=0.2))[..., :1]
    deltas = (out - images).reshape(64, -1)
    np.testing.assert_allclose(deltas, deltas[:, :1].repeat(deltas.shape[1], axis=1), atol=1e-3)
    assert np.abs(deltas).max() <= 0.2 * 255 + 1e-3 and np.abs(deltas).max() > 0.15 * 255


def test_contrast_alone_scales_each_image_about_its_mean_within_its_range():
    images = np.clip(scans(64), 80, 175)  # 0.3 either way never clips
    out = stream(images, only(contrast=0.3))[..., :1].astype(np.float64)
    means = images.mean(axis=(1, 2, 3), keepdims=True)
    factors = ((out - means) / (images - means)).reshape(64, -1)
    np.testing.assert_allclose(factors, factors[:, :1].repeat(factors.shape[1], axis=1), rtol=1e-3)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), means.ravel(), atol=1e-3)
    assert factors.min() >= 0.7 - 1e-4 and factors.max() <= 1.3 + 1e-4 and np.ptp(factors[:, 0]) > 0.4


def spot_images(count: int) -> np.ndarray:
    """A bright 3x3 spot 10 px right of the centre of a 33 px black image."""
    images = np.zeros((count, 33, 33, 1), np.float32)
    images[:, 15:18, 25:28] = 255
    return images


def spot_positions(images: np.ndarray) -> np.ndarray:
    """The spot's centroid (y, x) relative to the image centre, per image."""
    weights = images[..., 0] / images[..., 0].sum(axis=(1, 2), keepdims=True)
    ys, xs = np.mgrid[:33, :33] - 16.0
    return np.stack([(weights * ys).sum(axis=(1, 2)), (weights * xs).sum(axis=(1, 2))], axis=1)


def test_rotation_alone_turns_about_the_centre_within_its_degrees():
    images = spot_images(64)
    out = stream(images, only(rotation=30))[..., :1]
    y, x = spot_positions(out).T
    angles = np.degrees(np.arctan2(y, x))
    np.testing.assert_allclose(np.hypot(y, x), 10, atol=0.3)  # the same distance from the centre
    assert np.abs(angles).max() <= 30 + 1 and angles.min() < -20 and angles.max() > 20
    assert 0 <= out.min() and out.max() <= 255


def test_zoom_alone_scales_about_the_centre_within_its_share():
    images = spot_images(64)
    out = stream(images, only(zoom=0.3))[..., :1]
    y, x = spot_positions(out).T
    np.testing.assert_allclose(y, 0, atol=0.2)  # on the same ray
    ratios = x / 10  # zoom s shows the input's point c + s * d at c + d
    assert ratios.min() >= 1 / 1.3 - 0.02 and ratios.max() <= 1 / 0.7 + 0.02
    assert ratios.min() < 0.85 and ratios.max() > 1.2


def test_draws_are_uniform_per_op_and_stay_in_range_at_the_largest_params():
    uniforms = draw(3, tf.range(4000, dtype=tf.int64))
    for name, values in uniforms.items():
        values = values.numpy()
        assert 0 <= values.min() and values.max() < 1 and abs(values.mean() - 0.5) < 0.03, name
    assert len({values.numpy().tobytes() for values in uniforms.values()}) == len(uniforms)  # one stream per op
    largest = AugmentParams(views=1, flip=True, rotation=180, zoom=0.9, contrast=0.9, brightness=0.9)
    out = stream(scans(32), largest)
    assert 0 <= out.min() and out.max() <= 255 and np.isfinite(out).all()
    assert math.isclose(float(out.max()), 255, abs_tol=1) and out.min() == 0


def write_records(out: Path, images: np.ndarray) -> Path:
    """uint8 images of 1 or 3 channels as PNG TFRecords laid out as the preprocess stage does, all in train."""
    count, channels = len(images), images.shape[-1]
    examples = (serialize_example(encode_image(image[..., 0] if channels == 1 else image, "png"), 0,
                                  dict.fromkeys(ID_FIELDS, str(number))) for number, image in enumerate(images))
    out.mkdir()
    shards = write_shards(out, "train", examples, count, shard_size=4)
    write_meta(out, TFRecordsMeta(("scan",), {"train": count, "val": 0, "test": 0},
                                  {split: {"scan": count if split == "train" else 0} for split in SPLITS},
                                  SIZE, channels, "png", 4, {"train": shards, "val": [], "test": []}))
    return out


def test_rgb_records_are_read_as_stored_and_never_narrowed_to_one_channel(tmp_path):
    rgb = scans(6, channels=3).astype(np.uint8)
    records = write_records(tmp_path / "rgb", rgb)
    for channels in (None, 3):
        images = np.concatenate([batch for batch, _ in make_dataset(records, "train", 4, channels=channels)])
        assert images.dtype == np.float32 and np.array_equal(images, rgb)
    with pytest.raises(ValueError, match="at least the 3 stored, got 1"):
        make_dataset(records, "train", 4, channels=1)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_fine_tuning_stream_augments_the_stored_channels_and_gives_three(tmp_path, channels):
    records = write_records(tmp_path / "records", scans(8, channels).astype(np.uint8))
    params = parse_params(raw_params(batch_size=4))
    first, second = [next(iter(train_stream(records, params)))[0].numpy() for _ in range(2)]
    assert first.shape == (4, SIZE, SIZE, 3) and first.tobytes() == second.tobytes()
    assert np.array_equal(first[..., 0], first[..., 2]) is (channels == 1)  # gray repeated, colour kept
