"""The backbone registry: the one place that knows each keras.applications backbone.

Plain data, so that params can check names without importing Keras; `pipeline.networks.backbones`
builds the models from it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.core.errors import PipelineError

MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)  # input sizes with their own ImageNet weights


@dataclass(frozen=True)
class Backbone:
    name: str  # the keras.applications function that builds it
    preprocessing: str  # 'tf': [-1, 1]; 'caffe': BGR mean subtraction; 'builtin': the model takes [0, 255]
    min_size: int  # smallest input side the constructor accepts
    unfreeze: float  # default share of the base's layers to fine-tune, from the top
    weights_file: Callable[[int], str]  # Keras' ImageNet file (include_top=False) for an input size
    weights_folder: str  # its folder under Keras' download site
    weights_hash: str | None  # the hash Keras publishes for it (md5 or sha256), None where it publishes none

    @property
    def constructor(self):
        """The keras.applications function that builds it; Keras is imported only here, when a model is built."""
        import keras

        return getattr(keras.applications, self.name)

    def options(self) -> dict:
        """Extra constructor arguments: keep built-in preprocessing on."""
        return {"include_preprocessing": True} if self.preprocessing == "builtin" else {}


def _fixed(file_name: str) -> Callable[[int], str]:
    return lambda size: file_name


def _mobilenet_v2_file(size: int) -> str:
    rows = size if size in MOBILENET_V2_SIZES else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


BACKBONES = {backbone.name: backbone for backbone in (
    Backbone("MobileNetV2", "tf", 32, 0.35, _mobilenet_v2_file, "mobilenet_v2", None),
    Backbone("MobileNetV3Small", "builtin", 32, 0.3, _fixed("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
             "mobilenet_v3", "d3e8ec802a04aa4fc771ee12a9a9b836"),
    Backbone("MobileNetV3Large", "builtin", 32, 0.3, _fixed("weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
             "mobilenet_v3", "07fb09a5933dd0c8eaafa16978110389"),
    Backbone("InceptionV3", "tf", 75, 0.2, _fixed("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
             "inception_v3", "bcbd6486424b2319ff4ef7d526e38f63"),
    Backbone("ResNet101", "caffe", 32, 0.1, _fixed("resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"),
             "resnet", "88cf7a10940856eca736dc7b7e228a21"),
    Backbone("VGG19", "caffe", 32, 0.25, _fixed("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
             "vgg19", "253f8cb515780f3b799900260a226db6"),
    Backbone("EfficientNetV2B0", "builtin", 32, 0.2, _fixed("efficientnetv2-b0_notop.h5"),
             "efficientnet_v2", "893217f2bb855e2983157299931e43ff"),
    Backbone("ConvNeXtTiny", "builtin", 32, 0.2, _fixed("convnext_tiny_notop.h5"),
             "convnext", "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
)}


def get_backbone(name: str) -> Backbone:
    """The registered backbone of that name, or a PipelineError listing the known ones."""
    if name not in BACKBONES:
        raise PipelineError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def input_size(backbone: Backbone, image_size: int) -> int:
    """The side the base sees: image_size, raised to the backbone's minimum if smaller."""
    return max(image_size, backbone.min_size)


def is_pretrained(weights: str) -> bool:
    """Whether `weights` (imagenet, none or a path) starts the base from trained weights."""
    return weights != "none"


def describe(backbone: Backbone, weights: str, image_size: int) -> dict:
    """What a stage's meta.json says of the backbone it ran: name, weights, pretrained and sizes."""
    return {
        "backbone": backbone.name,
        "weights": weights,
        "pretrained": is_pretrained(weights),
        "image_size": image_size,
        "input_size": input_size(backbone, image_size),
    }
