"""params.yaml validation: a wrong value fails at load time with its key named."""

import pytest
import yaml

from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params, parse_params
from tests.conftest import ROOT, raw_params


def test_committed_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.data.archive == "data/raw/demo" and params.weights == "none"


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"image_size": "big"}, "image_size"),
        ({"image_size": 8}, "image_size"),
        ({"lr": 0}, "lr"),
        ({"lr": True}, "lr"),
        ({"epochs": 1.5}, "epochs"),
        ({"backbones": []}, "backbones"),
        ({"seed": -1}, "seed"),
        ({"synth": {"layout": "v3"}}, "synth.layout"),
        ({"synth": {"subjects": {"NonDemented": 0, "VeryMildDemented": 1, "MildDemented": 1, "ModerateDemented": 1}}},
         "synth.subjects.NonDemented"),
        ({"dedupe": {"min_score": 1.5}}, "dedupe.min_score"),
        ({"dedupe": {"rotation_step": 0}}, "dedupe.rotation_step"),
        ({"split": {"ratios": {"train": 0.7, "val": 0.2, "test": 0.2}}}, "split.ratios"),
        ({"split": {"copies_in_train": "yes"}}, "split.copies_in_train"),
        ({"preprocess": {"encoding": "gif"}}, "preprocess.encoding"),
        ({"data": {"classes": ["OnlyOne"]}}, "data.classes"),
        ({"audit": {"backbone": "AlexNet"}}, "audit.backbone"),
        ({"audit": {"repeats": 0}}, "audit.repeats"),
        ({"audit": {"test_share": 1.0}}, "audit.test_share"),
        ({"baselines": {"folds": 1}}, "baselines.folds"),
        ({"baselines": {"knn": {"k": 0, "ties": ["nearest"]}}}, "baselines.knn.k"),
        ({"baselines": {"knn": {"k": 3, "ties": ["nearest", "coin"]}}}, "baselines.knn.ties"),
        ({"baselines": {"knn": {"k": 3, "ties": []}}}, "baselines.knn.ties"),
    ],
)
def test_wrong_value_names_the_key(overrides, key):
    with pytest.raises(PipelineError, match=rf"params: {key} = "):
        parse_params(raw_params(**overrides))


def test_missing_and_unknown_keys_are_named():
    raw = raw_params()
    del raw["dedupe"]["candidates"]
    with pytest.raises(PipelineError, match="dedupe.candidates is missing"):
        parse_params(raw)
    with pytest.raises(PipelineError, match="unknown key split.ratio\\b"):
        parse_params(raw_params(split={"ratio": 0.5}))
    with pytest.raises(PipelineError, match="unknown key baselines.knn.weights\\b"):
        parse_params(raw_params(baselines={"knn": {"k": 3, "ties": ["random"], "weights": "distance"}}))


def test_unreadable_file_is_one_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    with pytest.raises(PipelineError, match="not found"):
        load_params(path)
    path.write_text("seed: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(path)
    path.write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(PipelineError, match="must be a mapping"):
        load_params(path)


def test_exponent_floats_as_dvc_writes_them_are_numbers(tmp_path):
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(raw_params(), sort_keys=False)
    path.write_text(text.replace("fine_tune_lr: 0.0001", "fine_tune_lr: 5e-05").replace("lr: 0.001", "lr: 1E+0"))
    params = load_params(path)
    assert params.fine_tune_lr == 5e-05 and params.lr == 1.0
