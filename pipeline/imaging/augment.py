"""Augmentation of [0, 255] image batches for tf.data streams, with stateless random ops run in parallel.

Image number i of a stream (counted from its start) is augmented from the seed (seed, i) alone, so
the same seed gives the same bytes whatever the batch size and however many calls run at once.
"""

import math

import tensorflow as tf

from pipeline.core.params import AugmentParams

VALUE_RANGE = (0.0, 255.0)
DRAWS = ("flip", "rotation", "zoom", "contrast", "brightness")  # one uniform per image each, in this order


def augment_dataset(dataset: tf.data.Dataset, params: AugmentParams, seed: int) -> tf.data.Dataset:
    """Augment the 1- or 3-channel images of (images, labels, ...) batches; return them with 3 channels.

    Gray images are augmented on their one channel, then repeated to 3 (a third of the work).
    Batches are numbered by a running image count, then augmented in parallel, in order.
    """
    channels = dataset.element_spec[0].shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"augment_dataset takes 1- or 3-channel images, got {channels}")

    def count(start, batch):
        return start + tf.cast(tf.shape(batch[0])[0], tf.int64), (start, batch)

    def augment(start, batch):
        images, *rest = batch
        positions = start + tf.range(tf.shape(images, tf.int64)[0])
        images = augment_images(images, draw(seed, positions), params)
        return (tf.tile(images, (1, 1, 1, 3)) if channels == 1 else images, *rest)

    numbered = dataset.scan(tf.constant(0, tf.int64), count)
    return numbered.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def draw(seed: int, positions: tf.Tensor) -> dict[str, tf.Tensor]:
    """Uniforms in [0, 1), one per image and op (DRAWS), image i's from the stateless seed (seed, positions[i])."""
    seeds = tf.stack([tf.fill(tf.shape(positions), tf.constant(seed, tf.int64)), positions], axis=1)
    uniforms = tf.map_fn(lambda pair: tf.random.stateless_uniform([len(DRAWS)], seed=pair), seeds,
                         fn_output_signature=tf.float32)
    return {name: uniforms[:, index] for index, name in enumerate(DRAWS)}


def augment_images(images: tf.Tensor, uniforms: dict[str, tf.Tensor], params: AugmentParams) -> tf.Tensor:
    """A horizontal flip, contrast and brightness, then rotation and zoom as one resampling; zero params skip theirs.

    Contrast and brightness come first, so each image's mean is taken over its stored pixels
    (summed in float64: exactly, for whole-number pixels, whatever the thread count).
    """
    if params.flip:
        flipped = uniforms["flip"][:, None, None, None] < 0.5
        images = tf.where(flipped, tf.reverse(images, axis=[2]), images)
    if params.contrast:
        factors = 1 + params.contrast * _symmetric(uniforms["contrast"])
        means = tf.cast(tf.reduce_mean(tf.cast(images, tf.float64), axis=(1, 2), keepdims=True), tf.float32)
        images = tf.clip_by_value((images - means) * factors[:, None, None, None] + means, *VALUE_RANGE)
    if params.brightness:
        deltas = params.brightness * (VALUE_RANGE[1] - VALUE_RANGE[0]) * _symmetric(uniforms["brightness"])
        images = tf.clip_by_value(images + deltas[:, None, None, None], *VALUE_RANGE)
    if params.rotation or params.zoom:
        angles = math.radians(params.rotation) * _symmetric(uniforms["rotation"])
        scales = 1 + params.zoom * _symmetric(uniforms["zoom"])  # above 1 zooms out, as Keras' RandomZoom
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=_rotate_and_scale(angles, scales, tf.shape(images)[1:3]),
            output_shape=tf.shape(images)[1:3], fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    return images


def _symmetric(uniforms: tf.Tensor) -> tf.Tensor:
    """[0, 1) to [-1, 1)."""
    return 2 * uniforms - 1


def _rotate_and_scale(angles: tf.Tensor, scales: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Per image, the 8 projective-transform numbers that map each output pixel to the input point it samples:
    rotated by `angles` (radians) and scaled by `scales` about the image's centre."""
    centre_y, centre_x = [(tf.cast(length, tf.float32) - 1) / 2 for length in tf.unstack(size)]
    cos, sin = tf.cos(angles) * scales, tf.sin(angles) * scales
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, -sin, centre_x - cos * centre_x + sin * centre_y,
                     sin, cos, centre_y - sin * centre_x - cos * centre_y, zeros, zeros], axis=1)
