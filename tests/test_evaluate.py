"""The evaluate stage end to end on a tiny saved Keras model and tiny TFRecords."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score

from pipeline.__main__ import main as cli
from pipeline.core.errors import PipelineError
from pipeline.core.params import load_params
from pipeline.imaging.tfrecords import make_dataset, write_tfrecords
from pipeline.stages.evaluate import main
from pipeline.tables.split import SplitRow as Row
from tests.conftest import ROOT, raw_params

CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
SIZE = 32
KEYS = {
    "accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "qwk", "log_loss", "ece", "per_class",
    "confusion_matrix", "subject", "ci95", "ci95_resamples", "params", "trainable_params", "size_mb", "latency_ms",
    "pretrained", "fine_tuning_kept", "backbone", "test_images", "test_subjects", "chance_balanced_accuracy",
    "majority_balanced_accuracy", "classes", "absent_classes", "ci95_single_subject_classes", "val",
}
HEADLINE = {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "qwk", "log_loss", "ece"}


def tiny_model(centre: float = 32) -> keras.Model:
    """Mean brightness m -> logits 0.05 k (m - centre k): class k wins for m near 2 centre k, so predictions vary."""
    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(4, activation="softmax")
    outputs = dense(keras.layers.GlobalAveragePooling2D()(inputs))
    k = np.arange(4, dtype=np.float32)
    dense.set_weights([np.tile(0.05 * k / 3, (3, 1)), -0.05 * centre * k**2])
    return keras.Model(inputs, outputs)


def write_test_split(root: Path, classes_present: tuple[str, ...], splits: tuple[str, ...] = ("test", "test", "val")
                     ) -> None:
    """Two subjects of three noisy flat slices per class in test, and one in val (by default), as TFRecords under
    data/tfrecords."""
    rng = np.random.default_rng(0)
    rows = []
    for k, label in enumerate(CLASSES):
        if label not in classes_present:
            continue
        for subject, split in enumerate(splits):
            for slice_ in range(3):
                path = f"{label}/s{subject}_{slice_}.png"
                pixels = np.clip(64 * k + 32 + rng.normal(0, 30) + rng.normal(0, 5, (SIZE, SIZE)), 0, 255)
                (root / "archive" / label).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(root / "archive" / path)
                rows.append(Row(path, label, split, f"{label}-{subject}", path, "original"))
    write_tfrecords(rows, root / "archive", root / "data/tfrecords", CLASSES, 1, SIZE, "png", 8)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A working directory with params.yaml, test TFRecords and models/tiny/ (model.keras, meta.json)."""
    monkeypatch.chdir(tmp_path)
    raw = raw_params(image_size=SIZE, batch_size=5, evaluate={"bootstrap": 50, "latency_runs": 2})
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    Path("models/tiny").mkdir(parents=True)
    tiny_model().save("models/tiny/model.keras")
    meta = {"backbone": "tiny", "pretrained": False, "fine_tuning_kept": True, "input_size": SIZE, "image_size": SIZE,
            "classes": list(CLASSES)}
    Path("models/tiny/meta.json").write_text(json.dumps(meta))
    return tmp_path


def read_report(backbone: str) -> dict:
    """The metrics JSON, refusing NaN or Infinity (not JSON)."""
    return json.loads(Path(f"metrics/eval/{backbone}.json").read_text(), parse_constant=pytest.fail)


def test_evaluate_writes_every_metric_and_its_tables_agree(project):
    write_test_split(project, CLASSES)
    assert cli(["evaluate", "tiny", "--params", "params.yaml"]) == 0
    report = read_report("tiny")
    assert set(report) == KEYS
    assert set(report["subject"]) == HEADLINE | {"confusion_matrix"}
    assert set(report["ci95"]) == HEADLINE
    assert set(report["latency_ms"]) == {"batch_1", "batch_32"} and min(report["latency_ms"].values()) > 0
    assert set(report["per_class"]) == set(CLASSES)
    assert (report["params"], report["trainable_params"], report["pretrained"]) == (16, 16, False)
    assert report["size_mb"] == pytest.approx(Path("models/tiny/model.keras").stat().st_size / 1e6)
    assert (report["test_images"], report["test_subjects"], report["absent_classes"]) == (24, 8, [])
    assert report["chance_balanced_accuracy"] == report["majority_balanced_accuracy"] == 0.25
    assert report["ci95_resamples"] == {"drawn": 50, "used": 50}  # subjects drawn within their class: none discarded
    assert report["ci95_single_subject_classes"] == []  # two test subjects of each class

    predictions = pd.read_csv("plots/eval/tiny/predictions.csv")
    assert list(predictions.columns) == ["path", "subject", "label", "label_index", "predicted",
                                         *(f"prob_{name}" for name in CLASSES)]
    truth, predicted = predictions["label"], predictions["predicted"]
    assert 1 < predicted.nunique() and 0 < report["accuracy"] < 1  # a case where the recomputation can disagree
    assert report["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(truth, predicted, labels=CLASSES, average="macro"))
    assert report["confusion_matrix"] == confusion_matrix(truth, predicted, labels=CLASSES).tolist()
    probabilities = predictions[[f"prob_{name}" for name in CLASSES]].to_numpy()
    images = np.concatenate([batch for batch, _ in make_dataset(Path("data/tfrecords"), "test", 24)])
    np.testing.assert_allclose(probabilities, tiny_model().predict(images, verbose=0), rtol=1e-5)
    assert report["roc_auc_ovr"] == pytest.approx(roc_auc_score(predictions["label_index"], probabilities,
                                                                multi_class="ovr"))
    subjects = predictions.groupby("subject")[[f"prob_{name}" for name in CLASSES]].mean()
    subject_truth = predictions.groupby("subject")["label_index"].first()
    subject_predicted = subjects.to_numpy().argmax(axis=1)
    assert report["subject"]["accuracy"] == pytest.approx(accuracy_score(subject_truth, subject_predicted))

    confusion = pd.read_csv("plots/eval/tiny/confusion.csv")
    assert confusion.to_dict("list") == {"actual": truth.tolist(), "predicted": predicted.tolist()}
    roc = pd.read_csv("plots/eval/tiny/roc.csv")
    assert list(roc.columns) == ["class", "fpr", "tpr"] and set(roc["class"]) == set(CLASSES)


def test_evaluate_scores_the_val_split_apart_from_test(project):
    write_test_split(project, CLASSES)
    assert cli(["evaluate", "tiny", "--params", "params.yaml"]) == 0
    val = read_report("tiny")["val"]
    assert set(val) == HEADLINE | {"ci95", "ci95_resamples", "images", "subjects"}
    assert (val["images"], val["subjects"]) == (12, 4) and set(val["ci95"]) == set(read_report("tiny")["ci95"])
    predictions = pd.read_csv("plots/eval/tiny/val_predictions.csv")
    assert set(predictions["path"]) == {f"{label}/s2_{slice_}.png" for label in CLASSES for slice_ in range(3)}
    assert val["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(predictions["label"],
                                                                             predictions["predicted"]))
    assert val["balanced_accuracy"] != read_report("tiny")["balanced_accuracy"]


def declared_outputs(stage: str, backbone: str) -> set[str]:
    """The paths dvc.yaml's matrix stage declares as outs, metrics or plots, for one backbone."""
    definition = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    entries = [entry for kind in ("outs", "metrics", "plots") for entry in definition.get(kind, [])]
    paths = [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]
    return {path.replace("${item.backbone}", backbone) for path in paths}


def test_dvc_yaml_declares_every_file_evaluate_writes(project):
    """An undeclared file is left stale when DVC restores the stage from its run-cache."""
    write_test_split(project, CLASSES)
    assert cli(["evaluate", "tiny", "--params", "params.yaml"]) == 0
    written = {path.as_posix() for path in [*Path("plots/eval").rglob("*"), *Path("metrics").rglob("*")]
               if path.is_file()}
    assert written == declared_outputs("evaluate", "tiny")


def test_evaluate_a_test_split_without_a_class(project):
    write_test_split(project, CLASSES[:3])
    main(load_params(Path("params.yaml")), "tiny")
    report = read_report("tiny")
    assert report["absent_classes"] == ["ModerateDemented"] and report["test_subjects"] == 6
    assert report["per_class"]["ModerateDemented"]["support"] == 0
    assert report["per_class"]["ModerateDemented"]["roc_auc"] is None
    aucs = [report["per_class"][name]["roc_auc"] for name in CLASSES[:3]]
    assert report["roc_auc_ovr"] == pytest.approx(np.mean(aucs))
    assert set(pd.read_csv("plots/eval/tiny/roc.csv")["class"]) == set(CLASSES[:3])


def test_a_missing_model_says_which_stage_makes_it(project):
    write_test_split(project, CLASSES)
    with pytest.raises(PipelineError, match=r"models/other/meta.json not found; run `dvc repro finetune@other` first"):
        main(load_params(Path("params.yaml")), "other")


def test_unordered_classes_get_no_qwk(project):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["data"]["ordinal"] = False
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_test_split(project, CLASSES)
    assert cli(["evaluate", "tiny", "--params", "params.yaml"]) == 0
    report = read_report("tiny")
    assert set(report) == KEYS - {"qwk"} and set(report["subject"]) == HEADLINE - {"qwk"} | {"confusion_matrix"}
    assert set(report["ci95"]) == HEADLINE - {"qwk"}


def test_an_empty_val_split_gets_no_val_scores_and_an_empty_table(project):
    write_test_split(project, CLASSES, splits=("test", "test"))
    assert cli(["evaluate", "tiny", "--params", "params.yaml"]) == 0
    assert read_report("tiny")["val"] is None
    assert pd.read_csv("plots/eval/tiny/val_predictions.csv").empty
