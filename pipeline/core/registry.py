"""The backbone registry: the one place that knows each keras.applications backbone.

Plain data, so that params can check names without importing Keras; `pipeline.networks.backbones`
builds the models from it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.core.errors import PipelineError

MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)  # input sizes with their own ImageNet weights


@dataclass(frozen=True, kw_only=True)
class Backbone:
    """One backbone's facts, named at each entry (keyword-only, as timm's pretrained configs are)."""

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
    Backbone(name="MobileNetV2", preprocessing="tf", min_size=32, unfreeze=0.35,
             weights_file=_mobilenet_v2_file, weights_folder="mobilenet_v2", weights_hash=None),
    Backbone(name="MobileNetV3Small", preprocessing="builtin", min_size=32, unfreeze=0.3,
             weights_file=_fixed("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
             weights_folder="mobilenet_v3", weights_hash="d3e8ec802a04aa4fc771ee12a9a9b836"),
    Backbone(name="MobileNetV3Large", preprocessing="builtin", min_size=32, unfreeze=0.3,
             weights_file=_fixed("weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
             weights_folder="mobilenet_v3", weights_hash="07fb09a5933dd0c8eaafa16978110389"),
    Backbone(name="InceptionV3", preprocessing="tf", min_size=75, unfreeze=0.2,
             weights_file=_fixed("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
             weights_folder="inception_v3", weights_hash="bcbd6486424b2319ff4ef7d526e38f63"),
    Backbone(name="ResNet101", preprocessing="caffe", min_size=32, unfreeze=0.1,
             weights_file=_fixed("resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"),
             weights_folder="resnet", weights_hash="88cf7a10940856eca736dc7b7e228a21"),
    Backbone(name="VGG19", preprocessing="caffe", min_size=32, unfreeze=0.25,
             weights_file=_fixed("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
             weights_folder="vgg19", weights_hash="253f8cb515780f3b799900260a226db6"),
    Backbone(name="EfficientNetV2B0", preprocessing="builtin", min_size=32, unfreeze=0.2,
             weights_file=_fixed("efficientnetv2-b0_notop.h5"),
             weights_folder="efficientnet_v2", weights_hash="893217f2bb855e2983157299931e43ff"),
    Backbone(name="ConvNeXtTiny", preprocessing="builtin", min_size=32, unfreeze=0.2,
             weights_file=_fixed("convnext_tiny_notop.h5"), weights_folder="convnext",
             weights_hash="d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
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
