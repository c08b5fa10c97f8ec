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


class GradCAM:
    """Grad-CAM of one model, its layers split around the base once. `traced`: the computation is traced once
    (tf.function, for any number of images), seconds at the first call, then many times faster than eagerly: for
    callers that explain again and again (the web app, on every upload)."""

    def __init__(self, model: keras.Model, traced: bool = False):
        base = base_of(model)
        self.tapped = keras.Model(base.inputs, [pooling_layer(base).input, base.output], name=f"{base.name}_tapped")
        self.before, self.after = _around(model, base)
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32), tf.TensorSpec((), tf.int32)]
        self.run = tf.function(self.raw_maps, input_signature=signature) if traced else self.raw_maps

    def __call__(self, images: np.ndarray, class_index: int | None = None) -> Explanation:
        """Grad-CAM maps of `images` (n, side, side, 3 floats in [0, 255], as inference reads them) for
        `class_index`, or for each image's predicted class when None."""
        maps, classes, probabilities = self.run(tf.convert_to_tensor(images, tf.float32),
                                                tf.constant(-1 if class_index is None else class_index, tf.int32))
        maps = maps.numpy()
        peaks = maps.max(axis=(1, 2), keepdims=True)
        maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        return Explanation(maps=maps.astype(np.float32), classes=classes.numpy(), probabilities=probabilities.numpy())

    def raw_maps(self, images: tf.Tensor, class_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The maps before scaling (at the images' side), the classes they explain (`class_index`, or each image's
        predicted class when it is negative) and the probabilities."""
        with tf.GradientTape() as tape:
            x = images
            for layer in self.before:
                x = layer(x, training=False)
            block, x = self.tapped(x, training=False)
            for layer in self.after[:-1]:
                x = layer(x, training=False)
            logits = tf.matmul(x, self.after[-1].kernel) + self.after[-1].bias  # the class scores before the softmax
            predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
            classes = tf.where(class_index < 0, predicted, tf.fill(tf.shape(predicted), class_index))
            scores = tf.gather(logits, classes, axis=1, batch_dims=1)
        gradients = tape.gradient(scores, block)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        maps = tf.nn.relu(tf.reduce_sum(weights * block, axis=-1))[..., None]
        return tf.image.resize(maps, tf.shape(images)[1:3], method="bilinear")[..., 0], classes, tf.nn.softmax(logits)


def gradcam(model: keras.Model, images: np.ndarray, class_index: int | None = None) -> Explanation:
    """Grad-CAM maps of `images` (n, side, side, 3 floats in [0, 255], as inference reads them) for `class_index`,
    or for each image's predicted class when None (`GradCAM`, run eagerly: for one call)."""
    return GradCAM(model)(images, class_index)


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
