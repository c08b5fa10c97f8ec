"""Augmentation of [0, 255] image batches with Keras preprocessing layers, for tf.data streams."""

import keras
import tensorflow as tf

from pipeline.core.params import AugmentParams

VALUE_RANGE = (0, 255)


def build_augmenter(params: AugmentParams, seed: int) -> keras.Sequential:
    """Random flip, rotation, zoom, contrast and brightness as params.augment asks; zero factors are left out."""
    layers = []
    if params.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if params.rotation:
        layers.append(keras.layers.RandomRotation(params.rotation / 360, fill_mode="constant", seed=seed + 1))
    if params.zoom:
        layers.append(keras.layers.RandomZoom(params.zoom, fill_mode="constant", seed=seed + 2))
    if params.contrast:
        layers.append(keras.layers.RandomContrast(params.contrast, value_range=VALUE_RANGE, seed=seed + 3))
    if params.brightness:
        layers.append(keras.layers.RandomBrightness(params.brightness, value_range=VALUE_RANGE, seed=seed + 4))
    return keras.Sequential(layers, name="augment")


def augment_dataset(dataset: tf.data.Dataset, augmenter: keras.Sequential) -> tf.data.Dataset:
    """Augment the images of (images, labels, ...) batches (training mode); gray ones are then repeated to 3 channels.

    Gray scans stay one channel while augmented: a third of the work of three identical ones. One batch
    at a time: the layers' seed state then advances in a fixed order and the same seed gives the
    same stream (parallel calls race on it).
    """
    gray = dataset.element_spec[0].shape[-1] == 1

    def augment(images, *rest):
        if augmenter.layers:
            images = augmenter(images, training=True)
        return (tf.tile(images, (1, 1, 1, 3)) if gray else images, *rest)

    return dataset.map(augment)
