"""`python -m pipeline predict`: scans fed as in training, every trained backbone's probabilities, clear errors."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.__main__ import main as cli
from pipeline.core.errors import PipelineError
from pipeline.core.files import save_model
from pipeline.core.params import SPLITS, parse_params
from pipeline.core.registry import get_backbone
from pipeline.imaging.tfrecords import TFRecordsMeta, make_dataset, write_meta, write_tfrecords
from pipeline.networks.backbones import base_of, build_model
from pipeline.networks.head import build_head
from pipeline.networks.inference import model_input, predict_scans
from pipeline.tables.split import SplitRow as Row
from tests.conftest import BACKBONES, raw_params
from tests.test_evaluate import CLASSES, SIZE, tiny_model


@pytest.fixture
def scans(tmp_path) -> list[Path]:
    """A grayscale JPEG and an RGB PNG of other sizes than the models'."""
    y, x = np.mgrid[0:120, 0:100]
    pixels = (127 + 100 * np.sin(x / 9) * np.cos(y / 7)).astype(np.uint8)
    paths = [tmp_path / "gray.jpg", tmp_path / "color.png"]
    Image.fromarray(pixels).save(paths[0])
    Image.fromarray(pixels.T).convert("RGB").save(paths[1])
    return paths


CENTRES = {"first": 32, "second": 20}  # two backbones' models that predict differently


@pytest.fixture
def models(tmp_path) -> dict[str, Path]:
    """models/<name>/model.keras of two backbones, and nothing else beside them."""
    files = {name: tmp_path / "models" / name / "model.keras" for name in CENTRES}
    for name, path in files.items():
        path.parent.mkdir(parents=True)
        tiny_model(CENTRES[name]).save(path)
    return files


@pytest.mark.parametrize("channels", [1, 3])
def test_model_input_equals_what_training_read_from_the_tfrecords(scans, tmp_path, channels):
    tinted = np.asarray(Image.open(scans[1]).convert("RGB")).copy()
    tinted[..., 2] //= 3  # real colour, so that gray and RGB reading differ
    Image.fromarray(tinted).save(scans[1])
    rows = [Row(path.name, CLASSES[0], "test", path.stem, path.name, "original") for path in scans]
    write_tfrecords(rows, tmp_path, tmp_path / "tfrecords", CLASSES, channels, SIZE, "png", 8)
    trained_on = np.concatenate([images for images, _ in make_dataset(tmp_path / "tfrecords", "test", 8)])
    np.testing.assert_array_equal(model_input(scans, SIZE, channels), trained_on)
    colour = model_input(scans[1:], SIZE, channels)[0]
    assert (np.abs(colour[..., 0] - colour[..., 2]).max() > 10) == (channels == 3)


def test_every_backbone_gives_its_probabilities_for_every_scan(scans, models):
    table = predict_scans(scans, models, CLASSES)
    assert list(table["backbone"]) == ["first", "first", "second", "second"]
    assert list(table["scan"]) == [str(scan) for scan in scans] * 2
    expected = [tiny_model(CENTRES[name]).predict_on_batch(model_input(scans, SIZE)) for name in CENTRES]
    assert not np.allclose(expected[0], expected[1], atol=0.01)  # each row can only match its own model
    probabilities = table[[f"prob_{name}" for name in CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities, np.concatenate(expected), rtol=1e-6)
    assert list(table["predicted"]) == [CLASSES[index] for index in probabilities.argmax(axis=1)]


def test_a_missing_model_is_a_pipeline_error_and_an_unreadable_scan_gets_its_row(scans, models, tmp_path):
    with pytest.raises(PipelineError, match=r"models/absent/model.keras not found; run `dvc repro finetune@absent` first"):
        predict_scans(scans, {"absent": models["first"].parents[1] / "absent" / "model.keras"}, CLASSES)
    (tmp_path / "notes.jpg").write_text("not an image")
    table = predict_scans([tmp_path / "notes.jpg", scans[0], tmp_path / "nowhere.jpg"], {"first": models["first"]},
                          CLASSES)
    assert list(table["scan"]) == [str(scans[0]), str(tmp_path / "notes.jpg"), str(tmp_path / "nowhere.jpg")]
    assert list(table["error"]) == ["", "not a readable image (unknown or corrupt format)", "no such file"]
    assert table["prob_NonDemented"].isna().tolist() == [False, True, True]


def test_cli_prints_a_row_per_scan_and_backbone(scans, models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    models["first"].parent.rename(models["first"].parents[1] / "MobileNetV3Small")
    raw = raw_params(backbones=["MobileNetV3Small"], image_size=SIZE)
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert cli(["predict", *map(str, scans), "--params", "params.yaml"]) == 1  # nothing says what it was trained on
    assert "data/tfrecords/meta.json not found; run `dvc repro preprocess` first" in capsys.readouterr().err
    empty = TFRecordsMeta(tuple(CLASSES), dict.fromkeys(SPLITS, 0), {split: dict.fromkeys(CLASSES, 0) for split in SPLITS},
                          SIZE, 1, "png", 8, {split: [] for split in SPLITS})
    write_meta(Path("data/tfrecords"), empty)
    assert cli(["predict", *map(str, scans), "--params", "params.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["scan", "backbone", "predicted", *(f"prob_{name}" for name in CLASSES)]
    assert [line.split()[:2] for line in lines[1:]] == [[str(scan), "MobileNetV3Small"] for scan in scans]


@pytest.mark.parametrize("argv", [["predict"], ["features"], ["split", "VGG19"], ["train", "VGG19", "ResNet101"]])
def test_cli_refuses_the_wrong_number_of_names(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(argv)
    assert stop.value.code == 2
    assert "takes" in capsys.readouterr().err


def test_predict_on_the_pipelines_own_models_gives_what_evaluate_gave(built_project):
    """The fine-tuned models take raw pixels (preprocessing is inside them): predict on the archive's test scans
    gives evaluate's probabilities for the very images."""
    evaluated = {name: pd.read_csv(built_project / f"plots/eval/{name}/predictions.csv") for name in BACKBONES}
    paths = list(evaluated[BACKBONES[0]]["path"][:6])
    archive = built_project / yaml.safe_load((built_project / "params.yaml").read_text())["data"]["archive"]
    models = {name: built_project / f"models/{name}/model.keras" for name in BACKBONES}
    table = predict_scans([archive / path for path in paths], models, CLASSES)
    columns = [f"prob_{name}" for name in CLASSES]
    for name, model_file in models.items():
        expected = evaluated[name].set_index("path").loc[paths, columns].to_numpy()
        np.testing.assert_allclose(table.loc[table["backbone"] == name, columns].to_numpy(), expected,
                                   rtol=1e-4, atol=1e-5, err_msg=name)
        model = keras.models.load_model(model_file, compile=False)
        inside = [layer for layer in [*model.layers, *base_of(model).layers]
                  if isinstance(layer, keras.layers.Rescaling | keras.layers.Normalization) and layer.name != "head"]
        assert inside, f"{name}: no preprocessing layer inside the model"


def test_predict_runs_an_inception_model_that_resizes_inside(scans, tmp_path):
    """InceptionV3 needs 75 px: at image_size 32 the model takes 32 px and resizes inside itself."""
    keras.utils.set_random_seed(0)
    head = build_head(np.random.default_rng(0).normal(size=(16, 2048)).astype(np.float32), len(CLASSES),
                      parse_params(raw_params()).head)
    model = build_model(get_backbone("InceptionV3"), "none", 32, head)
    path = tmp_path / "models/InceptionV3/model.keras"
    save_model(model, path)
    table = predict_scans(scans, {"InceptionV3": path}, CLASSES)
    probabilities = table[[f"prob_{name}" for name in CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities, model.predict_on_batch(model_input(scans, 32)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.input_shape == (None, 32, 32, 3)
    assert loaded.get_layer("resize").get_config()["height"] == 75
    assert base_of(loaded).input_shape == (None, 75, 75, 3)
