"""Backbone models built from the registry (`pipeline.core.registry`): base, extractor, full model."""

import logging

import keras
import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.core.registry import Backbone, input_size
from pipeline.networks.weights import weights_path

CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)  # Keras' 'caffe' mode: channels to BGR, then these means subtracted
log = logging.getLogger(__name__)


def build_base(backbone: Backbone, weights: str, size: int) -> keras.Model:
    """The backbone without its top, global-average pooled, for size x size x 3 inputs, with `weights` loaded."""
    path = weights_path(backbone, weights, size)
    base = backbone.constructor(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg",
                                **backbone.options())
    if path is not None:
        try:
            base.load_weights(str(path))
        except (ValueError, OSError) as error:
            raise PipelineError(f"{path}: cannot load into {backbone.name}: {str(error).splitlines()[0]}") from None
    return base


def preprocessing_layers(backbone: Backbone) -> list[keras.layers.Layer]:
    """Serializable layers mapping [0, 255] pixels to what the base expects (none if it has its own)."""
    if backbone.preprocessing == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if backbone.preprocessing == "caffe":
        return [_rgb_to_bgr(), keras.layers.Normalization(mean=list(CAFFE_MEANS_BGR), variance=[1.0] * 3,
                                                          name="preprocess")]
    return []


def _rgb_to_bgr() -> keras.layers.Layer:
    """A fixed layer that reverses the channels, RGB to BGR (exactly: a permutation matrix of ones and zeros).

    A plain Dense layer rather than a Lambda or a custom class, so that the saved model loads in Keras' safe
    mode with nothing of ours imported. Built from zeros, so that it draws nothing from the seeded random
    stream that fine-tuning's dropout and initialisers share.
    """
    layer = keras.layers.Dense(3, use_bias=False, trainable=False, kernel_initializer="zeros", name="rgb_to_bgr")
    layer.build((None, 3))
    layer.set_weights([np.eye(3, dtype=np.float32)[::-1]])
    return layer


def build_extractor(backbone: Backbone, weights: str, image_size: int) -> keras.Model:
    """(image_size, image_size, 3) floats in [0, 255] -> pooled base features, the base in inference mode."""
    size = input_size(backbone, image_size)
    if size != image_size:
        log.info("%s needs at least %d px; images of %d px are resized to %d inside the model",
                 backbone.name, backbone.min_size, image_size, size)
    base = build_base(backbone, weights, size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = base(_prepared(backbone, inputs, size), training=False)
    return keras.Model(inputs, features, name=f"{backbone.name}_features")


def _prepared(backbone: Backbone, images, size: int):
    """Images (symbolic or real) resized to the base's input side if needed, then preprocessed for it."""
    if size != images.shape[1]:
        images = keras.layers.Resizing(size, size, name="resize")(images)
    for layer in preprocessing_layers(backbone):
        images = layer(images)
    return images


def calibrate_batchnorm(backbone: Backbone, extractor: keras.Model, images) -> int:
    """Set every BatchNormalization statistic of the extractor's base from `images`; return how many layers.

    Random weights come with BatchNorm's default statistics (mean 0, variance 1), under which a
    deep net's activations vanish or blow up; statistics measured on real scans (a
    data-dependent initialisation) keep random features informative.
    """
    base = base_of(extractor)
    layers = [layer for layer in base._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # the statistics of this one pass replace the defaults
    base(_prepared(backbone, images, base.input_shape[1]), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return len(layers)


def build_model(backbone: Backbone, weights: str, image_size: int, head: keras.Model) -> keras.Model:
    """(image_size, image_size, 3) floats in [0, 255] -> class probabilities: resize, preprocess, base, head."""
    extractor = build_extractor(backbone, weights, image_size)
    inputs = extractor.input
    return keras.Model(inputs, head(extractor.output), name=backbone.name)


def base_of(model: keras.Model) -> keras.Model:
    """The keras.applications base nested in a model from build_extractor or build_model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "head")
