"""Grad-CAM (Selvaraju et al., 2017) on a saved model's base: where in the scan the evidence for a class lies.

Like MONAI's `monai.visualize.GradCAM`, with Keras: the model is run layer by layer on the same input path as
inference (resize, preprocessing, base, head), the base through a model over its own inputs that also gives its
last convolutional block's output, so nothing is rebuilt across the nested base (the "graph disconnected" pitfall,
tensorflow#44462). The block's channels are weighted by the mean gradient of the class's logit, summed, cut at
zero, scaled to a maximum of 1 and resized to the input image's side.
"""

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pipeline.networks.backbones import base_of


@dataclass(frozen=True)
class Explanation:
    maps: np.ndarray  # float32 (n, side, side) in [0, 1], the input images' side; zeros where no evidence is positive
    classes: np.ndarray  # int (n,): the class each map explains
    probabilities: np.ndarray  # float32 (n, classes): the model's own output on the images


def pooling_layer(base: keras.Model) -> keras.layers.Layer:
    """The base's global average pooling (pooling='avg'), whose input is its last convolutional block's output."""
    return next(layer for layer in reversed(base.layers) if isinstance(layer, keras.layers.GlobalAveragePooling2D))


def gradcam(model: keras.Model, images: np.ndarray, class_index: int | None = None) -> Explanation:
    """Grad-CAM maps of `images` (n, side, side, 3 floats in [0, 255], as inference reads them) for `class_index`,
    or for each image's predicted class when None."""
    base = base_of(model)
    tapped = keras.Model(base.inputs, [pooling_layer(base).input, base.output], name=f"{base.name}_tapped")
    before, after = _around(model, base)
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        x = images
        for layer in before:
            x = layer(x, training=False)
        block, x = tapped(x, training=False)
        for layer in after[:-1]:
            x = layer(x, training=False)
        logits = tf.matmul(x, after[-1].kernel) + after[-1].bias  # the class scores before the softmax
        probabilities = tf.nn.softmax(logits)
        classes = tf.argmax(logits, axis=1) if class_index is None else tf.fill([len(images)], class_index)
        scores = tf.gather(logits, classes, axis=1, batch_dims=1)
    gradients = tape.gradient(scores, block)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * block, axis=-1))[..., None]
    maps = tf.image.resize(maps, images.shape[1:3], method="bilinear")[..., 0].numpy()
    peaks = maps.max(axis=(1, 2), keepdims=True)
    maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
    return Explanation(maps=maps.astype(np.float32), classes=classes.numpy(), probabilities=probabilities.numpy())


def _around(model: keras.Model, base: keras.Model) -> tuple[list, list]:
    """The model's layers before its base and after it (nested models opened up), in the order they run;
    the last is the Dense layer whose softmax gives the probabilities."""
    layers = _flat(model)
    cut = layers.index(base)
    before, after = layers[:cut], layers[cut + 1:]
    if not after or not isinstance(after[-1], keras.layers.Dense):
        raise ValueError(f"{model.name} does not end in a Dense layer, whose logits Grad-CAM explains")
    return before, after


def _flat(model: keras.Model) -> list:
    """A chain model's layers in order, nested models other than `base_of`'s opened up, input layers left out."""
    base = base_of(model)
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and layer is not base:
            layers += [inner for inner in layer.layers if not isinstance(inner, keras.layers.InputLayer)]
        else:
            layers.append(layer)
    return layers
