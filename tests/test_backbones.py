"""The backbone registry: preprocessing as Keras does it, input sizes, and weights that never download."""

import hashlib
from dataclasses import replace

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
from keras.src.utils import file_utils

from pipeline.core.errors import PipelineError
from pipeline.core.registry import BACKBONES, Backbone, get_backbone, input_size
from pipeline.networks.backbones import (
    base_of,
    build_base,
    build_extractor,
    calibrate_batchnorm,
    preprocessing_layers,
)

FAMILIES = {  # the keras.applications module whose preprocess_input each backbone's layers must match
    "MobileNetV2": keras.applications.mobilenet_v2,
    "MobileNetV3Small": keras.applications.mobilenet_v3,
    "MobileNetV3Large": keras.applications.mobilenet_v3,
    "InceptionV3": keras.applications.inception_v3,
    "ResNet101": keras.applications.resnet,
    "VGG19": keras.applications.vgg19,
    "EfficientNetV2B0": keras.applications.efficientnet_v2,
    "ConvNeXtTiny": keras.applications.convnext,
}


class DownloadAttempted(Exception):
    pass


@pytest.fixture
def no_download(monkeypatch) -> list[str]:
    """Make any Keras download attempt raise; the file names asked for are collected."""
    asked = []

    def get_file(fname, *args, **kwargs):
        asked.append(fname)
        raise DownloadAttempted(fname)

    monkeypatch.setattr(file_utils, "get_file", get_file)  # what keras.applications call
    monkeypatch.setattr(keras.utils, "get_file", get_file)  # what pipeline.networks.weights calls
    return asked


def test_registry_knows_every_backbone_and_names_them_on_a_typo():
    assert set(BACKBONES) == set(FAMILIES)
    with pytest.raises(PipelineError, match="unknown backbone 'ResNet50'.*MobileNetV2.*ConvNeXtTiny"):
        get_backbone("ResNet50")



def test_registry_entries_name_their_fields():
    with pytest.raises(TypeError, match="positional"):
        Backbone("ResNet101", "caffe", 32, 0.1, lambda size: "resnet.h5", "resnet", None)
    resnet = get_backbone("ResNet101")
    assert (resnet.min_size, resnet.unfreeze, resnet.preprocessing) == (32, 0.1, "caffe")


COLOURS = np.array([[[[0.0, 0.0, 0.0], [200.0, 50.0, 10.0], [10.0, 90.0, 240.0], [255.0, 255.0, 255.0]]]], np.float32)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_preprocessing_layers_match_keras_preprocess_input_on_colour(name):
    x = COLOURS
    for layer in preprocessing_layers(get_backbone(name)):
        x = np.asarray(layer(x))
    expected = FAMILIES[name].preprocess_input(COLOURS.copy())
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["ResNet101", "MobileNetV2"])
def test_extractor_feeds_its_base_what_keras_preprocess_input_gives(name):
    """The whole model on a colour image equals its base on Keras' own preprocessing of that image."""
    backbone = get_backbone(name)
    extractor = build_extractor(backbone, "none", 32)
    image = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = base_of(extractor)(FAMILIES[name].preprocess_input(image.copy()), training=False)
    np.testing.assert_allclose(extractor(image, training=False), expected, rtol=1e-4, atol=1e-4)


def test_preprocessing_differs_by_family():
    pixel = np.full((1, 1, 1, 3), 200.0, np.float32)
    outputs = {}
    for backbone in BACKBONES.values():
        x = pixel
        for layer in preprocessing_layers(backbone):
            x = layer(x)
        outputs.setdefault(backbone.preprocessing, set()).add(tuple(np.asarray(x).ravel().round(3)))
    assert {mode: len(values) for mode, values in outputs.items()} == {"tf": 1, "caffe": 1, "builtin": 1}
    assert len({values.pop() for values in outputs.values()}) == 3
    assert [name for name, backbone in BACKBONES.items() if backbone.preprocessing == "caffe"] == ["ResNet101", "VGG19"]


@pytest.mark.parametrize("name", ["MobileNetV3Small", "EfficientNetV2B0", "ConvNeXtTiny"])
def test_builtin_preprocessing_is_inside_the_base(name):
    base = build_base(get_backbone(name), "none", 32)
    first = next(layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer))
    assert isinstance(first, keras.layers.Rescaling | keras.layers.Normalization)


def test_inception_at_32_px_is_resized_to_75_and_builds():
    backbone = get_backbone("InceptionV3")
    assert input_size(backbone, 32) == 75 and input_size(backbone, 80) == 80
    assert input_size(get_backbone("MobileNetV3Small"), 32) == 32
    extractor = build_extractor(backbone, "none", 32)
    assert extractor.input.shape[1:] == (32, 32, 3)
    assert extractor.get_layer("resize").get_config()["height"] == 75
    assert extractor.predict_on_batch(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 2048)


@pytest.mark.parametrize("name, size", [(name, 75) for name in sorted(BACKBONES)] + [("MobileNetV2", 96)])
@pytest.mark.filterwarnings("ignore:.*will be loaded as the default:UserWarning")  # 75 px: Keras' 224 file, on purpose
def test_weights_file_is_the_one_keras_would_download(name, size, no_download):
    backbone = get_backbone(name)
    with pytest.raises(DownloadAttempted):
        backbone.constructor(include_top=False, weights="imagenet", input_shape=(size, size, 3), pooling="avg",
                             **backbone.options())
    assert no_download == [backbone.weights_file(size)]


def test_imagenet_weights_load_from_the_keras_cache(tmp_path, monkeypatch, no_download):
    backbone = get_backbone("MobileNetV3Small")
    keras.utils.set_random_seed(1)
    saved = build_base(backbone, "none", 32)
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    with h5py.File(cache / backbone.weights_file(32), "w") as handle:  # Keras' own (legacy h5) format
        save_weights_to_hdf5_group(handle, saved)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    keras.utils.set_random_seed(2)
    digest = hashlib.md5((cache / backbone.weights_file(32)).read_bytes()).hexdigest()
    loaded = build_base(replace(backbone, weights_hash=digest), "imagenet", 32)  # as if it were Keras' own file
    assert no_download == []
    _assert_same_weights(loaded, saved)


def test_weights_from_a_path_are_loaded_into_the_base(tmp_path):
    backbone = get_backbone("MobileNetV2")
    keras.utils.set_random_seed(1)
    saved = build_base(backbone, "none", 32)
    path = tmp_path / "base.weights.h5"
    saved.save_weights(path)
    keras.utils.set_random_seed(2)
    assert not np.array_equal(build_base(backbone, "none", 32).get_weights()[0], saved.get_weights()[0])
    _assert_same_weights(build_base(backbone, str(path), 32), saved)
    with pytest.raises(PipelineError, match="missing.h5 not found"):
        build_base(backbone, str(tmp_path / "missing.h5"), 32)


def test_random_init_is_reproducible_under_a_seed():
    backbone = get_backbone("MobileNetV3Small")
    keras.utils.set_random_seed(5)
    first = build_base(backbone, "none", 32)
    keras.utils.set_random_seed(5)
    _assert_same_weights(build_base(backbone, "none", 32), first)


def _assert_same_weights(model: keras.Model, other: keras.Model) -> None:
    weights, expected = model.get_weights(), other.get_weights()
    assert len(weights) == len(expected) > 0
    for value, want in zip(weights, expected):
        np.testing.assert_array_equal(value, want)


def test_batchnorm_calibration_stops_random_features_vanishing():
    backbone = get_backbone("MobileNetV2")
    keras.utils.set_random_seed(0)
    extractor = build_extractor(backbone, "none", 32)
    images = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    assert np.abs(extractor.predict_on_batch(images)).mean() < 1e-6  # default statistics: the signal vanishes
    assert calibrate_batchnorm(backbone, extractor, images) > 0
    features = extractor.predict_on_batch(images)
    assert np.abs(features).mean() > 1e-2 and features.std(axis=0).mean() > 1e-2
