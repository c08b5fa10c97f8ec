"""A stage run by hand (`python -m pipeline <stage>`) whose inputs contradict params, or the files they were made
from, stops and names the stage to run first; checked on tiny files, before any model is built."""

import json
from pathlib import Path

import pytest

from pipeline.analysis.comparison import read_predictions
from pipeline.core.errors import PipelineError
from pipeline.core.params import parse_params
from pipeline.core.registry import get_backbone
from pipeline.networks.finetune import load_head
from pipeline.networks.weights import stage_weights
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import features as features_stage
from pipeline.stages import finetune as finetune_stage
from pipeline.stages import train as train_stage
from pipeline.tables.features import load_features, read_features_meta
from pipeline.tables.index import read_index
from pipeline.tables.source import read_source_info
from tests.conftest import raw_params
from tests.tfrecords_meta import write_empty_meta

BACKBONE = "MobileNetV3Small"
CLASSES = ["NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented"]


def write(path: str, values: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(values))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder holding what the data stages left for the params below: TFRecords' meta.json at image size 64."""
    monkeypatch.chdir(tmp_path)
    write_empty_meta(Path("data/tfrecords"), CLASSES, image_size=64)
    return tmp_path


def params(**sections):
    return parse_params(raw_params(**{"image_size": 64, **sections}))


def test_features_by_hand_on_weights_staged_for_none_names_the_weights_stage(project):
    stage_weights(get_backbone(BACKBONE), "none", 64, Path(f"data/weights/{BACKBONE}"))
    with pytest.raises(PipelineError, match=rf"^data/weights/{BACKBONE}/source.json was made for weights 'none', not "
                                            rf"'imagenet': it is stale; run `dvc repro weights@{BACKBONE}` first$"):
        features_stage.main(params(weights="imagenet"), BACKBONE)


def test_features_on_weights_staged_for_another_size_names_the_weights_stage(project):
    stage_weights(get_backbone(BACKBONE), "none", 32, Path(f"data/weights/{BACKBONE}"))
    with pytest.raises(PipelineError, match=rf"input_size 32, not 64: .* `dvc repro weights@{BACKBONE}`"):
        features_stage.main(params(), BACKBONE)


def test_features_on_tfrecords_of_another_image_size_names_preprocess(project):
    with pytest.raises(PipelineError, match=r"^data/tfrecords/meta.json was made for image_size 64, not 96: it is "
                                            r"stale; run `dvc repro preprocess` first$"):
        features_stage.main(params(image_size=96), BACKBONE)


def test_finetune_on_tfrecords_of_other_classes_names_preprocess(project):
    data = {"source": "folder", "archive": "photos", "classes": ["a", "b", "c", "d"], "negative_class": ""}
    with pytest.raises(PipelineError, match=r"meta.json was made for classes \['NonDemented', .*\], not \['a', 'b', "
                                            r"'c', 'd'\]: .* `dvc repro preprocess`"):
        finetune_stage.main(params(data=data), BACKBONE)


def test_finetune_on_features_of_other_weights_names_the_features_stage(project):
    write(f"data/features/{BACKBONE}/meta.json", {"weights": "none", "image_size": 64, "classes": CLASSES})
    with pytest.raises(PipelineError, match=rf"features/{BACKBONE}/meta.json was made for weights 'none', not "
                                            rf"'imagenet': .* `dvc repro features@{BACKBONE}`"):
        finetune_stage.main(params(weights="imagenet"), BACKBONE)


def test_train_on_features_of_other_classes_names_the_features_stage(project):
    write(f"data/features/{BACKBONE}/meta.json", {"weights": "none", "image_size": 64, "classes": CLASSES[:3]})
    with pytest.raises(PipelineError, match=rf"classes .* `dvc repro features@{BACKBONE}`"):
        train_stage.main(params(), BACKBONE)


def test_evaluate_with_a_model_of_other_classes_than_the_tfrecords_names_finetune(project):
    write(f"models/{BACKBONE}/meta.json", {"pretrained": False, "fine_tuning_kept": True, "image_size": 64,
                                           "classes": CLASSES[::-1]})
    with pytest.raises(PipelineError, match=rf"^models/{BACKBONE}/meta.json was made for classes .*: it is stale; "
                                            rf"run `dvc repro finetune@{BACKBONE}` first$"):
        evaluate_stage.main(params(), BACKBONE)


@pytest.mark.parametrize(("read", "stage"), [
    (lambda root: read_source_info(root / "data/interim/source.json"), "dedupe"),
    (lambda root: read_index(root / "data/interim/index.csv"), "dedupe"),
    (lambda root: load_features(root / f"data/features/{BACKBONE}", "train"), f"features@{BACKBONE}"),
    (lambda root: read_features_meta(root / f"data/features/{BACKBONE}"), f"features@{BACKBONE}"),
    (lambda root: load_head(root / f"models/{BACKBONE}/head.keras"), f"train@{BACKBONE}"),
    (lambda root: read_predictions(root / f"plots/eval/{BACKBONE}/predictions.csv", f"evaluate@{BACKBONE}"),
     f"evaluate@{BACKBONE}"),
])
def test_a_missing_input_names_the_stage_that_makes_it_in_one_phrasing(read, stage, tmp_path):
    with pytest.raises(PipelineError, match=rf" not found; run `dvc repro {stage}` first$"):
        read(tmp_path)
