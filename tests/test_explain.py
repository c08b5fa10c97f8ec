"""Grad-CAM: a planted shortcut is found, randomised top layers change the maps (Adebayo et al., 2018), every
backbone's saved model is explained, and the explain stage and `predict --explain` write the same bytes again."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr

from pipeline.__main__ import main as cli
from pipeline.analysis.comparison import add_explanations
from pipeline.analysis.report import attention_warnings, explanations
from pipeline.core.files import save_model
from pipeline.core.registry import BACKBONES, get_backbone
from pipeline.explain.attention import attention_summary, brain_masks, mass_inside
from pipeline.explain.gradcam import GradCAM, gradcam
from pipeline.explain.sample import sample_per_class
from pipeline.networks.backbones import build_extractor
from pipeline.networks.inference import load_model
from tests.conftest import raw_params
from tests.test_evaluate import CLASSES, SIZE, write_test_split

SIDE, SQUARE = 32, 8
CORNERS = ((0, 0), (SIDE - SQUARE, SIDE - SQUARE))  # class k: a bright square at CORNERS[k], nothing else differs
RIM = 4  # px: two cells of the tiny model's last block (16 x 16 cells of 2 px), which bilinear resizing spreads


def nested_model(side: int, n_classes: int) -> keras.Model:
    """A small convolutional base (nested, pooled like pooling='avg') and a softmax head, as the pipeline builds
    models: [-1, 1] scaling, so that zero padding differs from the dark background and a square's corner can tell."""
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="middle_conv")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="base")
    head = keras.Sequential([keras.Input((16,)), keras.layers.Dense(n_classes, activation="softmax",
                                                                     name="probabilities")], name="head")
    outer = keras.Input((side, side, 3), name="image")
    return keras.Model(outer, head(base(outer)), name="tiny")


def shortcut_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark noisy scans whose class is given only by where a bright square lies: images, labels, the squares."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CORNERS), n)
    images = np.clip(rng.normal(20, 10, (n, SIDE, SIDE)), 0, 255)
    squares = np.zeros(images.shape, bool)
    for index, label in enumerate(labels):
        row, column = CORNERS[label]
        squares[index, row:row + SQUARE, column:column + SQUARE] = True
    images[squares] = 255
    return np.repeat(images[..., None], 3, axis=-1).astype(np.float32), labels, squares


def train_shortcut() -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray]:
    """The tiny model trained on 256 shortcut scans (seconds on a CPU), and 32 held-out ones."""
    keras.utils.set_random_seed(0)
    images, labels, _ = shortcut_data(256, 0)
    model = nested_model(SIDE, len(CORNERS))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    return (model, *shortcut_data(32, 1))


@pytest.fixture(scope="module")
def shortcut() -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray]:
    return train_shortcut()


def test_the_maps_find_a_planted_shortcut(shortcut):
    """Measured: 0.27 of the maps' mass on the square (6.25% of the image); 0.64 on it with a rim of two map cells
    (13% of the image). The maps sit on the square's inner edges, where its corner is told from the other."""
    model, images, labels, squares = shortcut
    explanation = gradcam(model, images)
    assert (explanation.classes == labels).all()
    np.testing.assert_allclose(explanation.probabilities, model.predict_on_batch(images), atol=1e-5)
    on_square = mass_inside(explanation.maps, squares)
    rimmed = np.stack([binary_dilation(square, iterations=RIM) for square in squares])
    assert squares.mean() == 0.0625 and rimmed.mean() < 0.14
    assert on_square.mean() > 3 * squares.mean()
    assert mass_inside(explanation.maps, rimmed).mean() > 0.5


def test_randomising_the_top_layers_changes_the_maps(shortcut):
    """Adebayo et al.'s cascading model randomisation: the head and the top two convolutions re-initialised, the maps'
    mean Spearman correlation with the trained model's falls below 0.5 (measured: 0.18)."""
    model, images, _, _ = shortcut
    trained = gradcam(model, images).maps
    randomised = keras.models.clone_model(model)
    randomised.set_weights(model.get_weights())
    keras.utils.set_random_seed(1)
    base = randomised.get_layer("base")
    for layer in (randomised.get_layer("head").get_layer("probabilities"), base.get_layer("last_conv"),
                  base.get_layer("middle_conv")):
        layer.set_weights([layer.kernel_initializer(layer.kernel.shape), np.zeros(layer.bias.shape)])
    maps = gradcam(randomised, images).maps
    correlations = [spearmanr(first.ravel(), second.ravel()).statistic for first, second in zip(trained, maps)]
    assert np.mean(correlations) < 0.5


def test_a_chosen_class_is_explained_instead_of_the_predicted_one(shortcut):
    model, images, _, _ = shortcut
    explanation = gradcam(model, images[:4], class_index=1)
    assert explanation.classes.tolist() == [1] * 4 and explanation.maps.shape == (4, SIDE, SIDE)
    assert explanation.maps.min() >= 0 and explanation.maps.max() <= 1


def saved_backbone(name: str, folder: Path) -> keras.Model:
    """A registered backbone at 32 px with a 3-class head, saved and loaded back as the pipeline does."""
    keras.utils.set_random_seed(0)
    extractor = build_extractor(get_backbone(name), "none", 32)
    head = keras.Sequential([keras.Input(extractor.output.shape[1:]),
                             keras.layers.Dense(3, activation="softmax", name="probabilities")], name="head")
    save_model(keras.Model(extractor.input, head(extractor.output), name=name), folder / "model.keras")
    return load_model(folder / "model.keras", name)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_gives_a_map_of_the_input_size_from_its_saved_model(name, tmp_path):
    """The saved model nests its base; InceptionV3 resizes 32 px inside it to 75."""
    model = saved_backbone(name, tmp_path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    explanation = gradcam(model, images)
    assert explanation.maps.shape == (2, 32, 32)
    np.testing.assert_allclose(explanation.probabilities, model.predict_on_batch(images), atol=1e-5)


def test_the_traced_explainer_gives_the_eager_maps_and_traces_once_for_any_number_of_images(tmp_path):
    """What the web app runs on every upload; InceptionV3, whose inner resize must trace too."""
    model = saved_backbone("InceptionV3", tmp_path)
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    traced = GradCAM(model, traced=True)
    for count in (1, 3, 2):
        explanation, eager = traced(images[:count]), gradcam(model, images[:count])
        np.testing.assert_allclose(explanation.maps, eager.maps, atol=1e-4)
        assert (explanation.classes == eager.classes).all()
    assert traced(images, class_index=2).classes.tolist() == [2] * 3
    assert traced.run.experimental_get_tracing_count() == 1


def test_brain_masks_find_a_bright_disc_and_mass_inside_weighs_the_map():
    rows, columns = np.mgrid[0:64, 0:64]
    disc = (rows - 30) ** 2 + (columns - 34) ** 2 < 20**2
    scans = np.where(disc, 180.0, 10.0)[None]
    masks = brain_masks(np.repeat(scans[..., None], 3, axis=-1))
    assert (masks[0] != disc).mean() < 0.03
    inside, even = disc[None].astype(np.float32), np.ones((1, 64, 64), np.float32)
    assert mass_inside(inside, masks)[0] > 0.97
    assert mass_inside(even, masks)[0] == pytest.approx(masks.mean())
    assert np.isnan(mass_inside(np.zeros((1, 64, 64)), masks)[0])
    summary = attention_summary(np.concatenate([inside, np.zeros((1, 64, 64))]), np.concatenate([masks, masks]))
    assert summary["maps_without_mass"] == 1 and summary["attention_inside_brain"] > 0.97


def test_the_sample_is_seeded_per_class_and_takes_what_a_class_has():
    labels = np.array([0, 1, 0, 0, 1, 0, 2])
    rows = sample_per_class(labels, 4, 2, seed=3)
    assert rows == sample_per_class(labels, 4, 2, seed=3)
    assert [len(row) for row in rows] == [2, 2, 1, 0] and all(labels[index] == k for k, row in enumerate(rows)
                                                             for index in row)
    assert any(sample_per_class(labels, 4, 2, seed) != rows for seed in range(10))


def test_compare_warns_when_a_model_looks_mostly_outside_the_brain(tmp_path):
    records = {"A": {"attention_inside_brain": 0.3, "brain_share_of_image": 0.45, "scans": 8,
                     "grid": "plots/explain/A/grid.png"},
               "B": {"attention_inside_brain": 0.8, "brain_share_of_image": 0.45, "scans": 8,
                     "grid": "plots/explain/B/grid.png"}}
    lines = attention_warnings({"explanations": records})
    assert lines == ["> **A model looks mostly outside the brain**: the share of its Grad-CAM maps' mass inside the "
                     "brain is A 30%, on 8 test scans where the brain covers 45% of the image. Its scores may rest on "
                     "the background or the outline rather than the anatomy (see Where each model looks)."]
    records["B"]["attention_inside_brain"] = 0.4
    [line] = attention_warnings({"explanations": records})  # one line for all, not one each
    assert line.startswith("> **2 models look mostly outside the brain**: the share of their Grad-CAM maps' mass "
                           "inside the brain is A 30%, B 40%, on 8 test scans")
    section = explanations({"explanations": records}, Path("reports"))
    assert "![A: Grad-CAM on test scans](../plots/explain/A/grid.png)" in section and "| B | 0.40 | 0.45 | 8 |" in section


def test_the_share_inside_the_brain_stands_beside_the_backbones_scores():
    summary = {"models": {"A": {"model": "A"}, "B": {"model": "B"}, "ensemble_mean": {"model": "ensemble_mean"}}}
    add_explanations(summary, {"A": {"attention_inside_brain": 0.3, "scans": 8}, "B": {"scans": 8}},
                     {"A": Path("plots/explain/A/grid.png"), "B": Path("plots/explain/B/grid.png")})
    assert summary["models"]["A"]["attention_inside_brain"] == 0.3
    assert "attention_inside_brain" not in summary["models"]["B"] | summary["models"]["ensemble_mean"]
    assert summary["explanations"]["B"] == {"scans": 8, "grid": "plots/explain/B/grid.png"}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A working directory with params.yaml, test TFRecords and models/tiny/model.keras (a nested base)."""
    monkeypatch.chdir(tmp_path)
    raw = raw_params(image_size=SIZE, explain={"per_class": 2})
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    keras.utils.set_random_seed(0)
    save_model(nested_model(SIZE, len(CLASSES)), Path("models/tiny/model.keras"))
    write_test_split(tmp_path, CLASSES[:3])
    return tmp_path


def test_the_stage_writes_the_grid_and_metrics_and_the_same_bytes_again(project):
    grid, metrics = Path("plots/explain/tiny/grid.png"), Path("metrics/explain/tiny.json")
    assert cli(["explain", "tiny", "--params", "params.yaml"]) == 0
    first = grid.read_bytes(), metrics.read_bytes()
    written = json.loads(metrics.read_text())
    assert written["scans"] == 6 and written["per_class"] == {"NonDemented": 2, "VeryMildDemented": 2,
                                                              "MildDemented": 2, "ModerateDemented": 0}
    assert 0 <= written["attention_inside_brain"] <= 1 and 0 < written["brain_share_of_image"] < 1
    assert Image.open(grid).size[1] > Image.open(grid).size[0]  # four class rows, two scans each
    grid.unlink()
    assert cli(["explain", "tiny", "--params", "params.yaml"]) == 0
    assert (grid.read_bytes(), metrics.read_bytes()) == first


def test_predict_writes_each_models_overlay(project, capsys):
    scan = project / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), np.uint8)).save(scan)
    edited = yaml.safe_load(Path("params.yaml").read_text()) | {"backbones": ["MobileNetV3Small"]}
    Path("params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    Path("models/MobileNetV3Small").mkdir(parents=True)
    Path("models/tiny/model.keras").rename("models/MobileNetV3Small/model.keras")
    assert cli(["predict", str(scan), "missing.png", "--explain", "overlays", "--params", "params.yaml"]) == 0
    assert "wrote 1 Grad-CAM overlays under overlays" in capsys.readouterr().out
    assert Image.open("overlays/MobileNetV3Small/scan.png.png").size[0] > 100
