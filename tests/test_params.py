"""params.yaml validation: a wrong value fails at load time with its key named."""

import re
import time

import pytest
import yaml

from pipeline.core.errors import PipelineError
from pipeline.core.params import class_key, load_params, parse_params
from tests.conftest import ROOT, merge_params, raw_params


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
        ({"split": {"folds": 0}}, "split.folds"),
        ({"preprocess": {"encoding": "gif"}}, "preprocess.encoding"),
        ({"data": {"classes": ["OnlyOne"]}}, "data.classes"),
        ({"audit": {"backbone": "AlexNet"}}, "audit.backbone"),
        ({"audit": {"repeats": 0}}, "audit.repeats"),
        ({"audit": {"test_share": 1.0}}, "audit.test_share"),
        ({"baselines": {"folds": 1}}, "baselines.folds"),
        ({"baselines": {"fold_study": {"model": "svm", "input": "pixels", "folds": [3], "leave_one_subject_out": True,
                                       "repeats": 1}}}, "baselines.fold_study.model"),
        ({"baselines": {"fold_study": {"model": "rbf_svm", "input": "pixels", "folds": [3, 3],
                                       "leave_one_subject_out": True, "repeats": 1}}}, "baselines.fold_study.folds"),
        ({"baselines": {"knn": {"k": 0, "ties": ["nearest"]}}}, "baselines.knn.k"),
        ({"baselines": {"knn": {"k": 3, "ties": ["nearest", "coin"]}}}, "baselines.knn.ties"),
        ({"baselines": {"knn": {"k": 3, "ties": []}}}, "baselines.knn.ties"),
        ({"tune": {"VGG19": {"lr": 2}}}, "tune.VGG19.lr"),
        ({"tune": {"VGG19": {"head": {"dropout": 1}}}}, "tune.VGG19.head.dropout"),
        ({"tune": {"VGG19": {"finetune": {"unfreeze": 2}}}}, "tune.VGG19.finetune.unfreeze"),
        ({"baselines": {"pixel_size": 2}}, "baselines.pixel_size"),
        ({"baselines": {"reductions": {"input": "both", "strategies": [], "base_models": ["linear_svm"],
                                       "code_size": 1.5}}}, "baselines.reductions.input"),
        ({"baselines": {"reductions": {"input": "pixels", "strategies": ["one_vs_all"], "base_models": ["linear_svm"],
                                       "code_size": 1.5}}}, "baselines.reductions.strategies"),
        ({"baselines": {"reductions": {"input": "pixels", "strategies": [], "base_models": [], "code_size": 1.5}}},
         "baselines.reductions.base_models"),
        ({"baselines": {"reductions": {"input": "pixels", "strategies": [], "base_models": ["linear_svm"],
                                       "code_size": 0}}}, "baselines.reductions.code_size"),
    ],
)
def test_wrong_value_names_the_key(overrides, key):
    with pytest.raises(PipelineError, match=rf"params: {key} = "):
        parse_params(raw_params(**overrides))


def test_split_ratios_are_a_read_only_mapping_in_split_order_and_params_stay_hashable():
    params = parse_params(raw_params(split={"ratios": {"test": 0.1, "val": 0.2, "train": 0.7}}))
    ratios = params.split.ratios
    assert ratios["val"] == 0.2 and list(ratios) == ["train", "val", "test"]
    with pytest.raises(TypeError):
        ratios["val"] = 0.3  # type: ignore[index]
    assert hash(params) == hash(parse_params(raw_params(split={"ratios": {"train": 0.7, "val": 0.2, "test": 0.1}})))


def test_pixels_are_shrunk_never_grown():
    with pytest.raises(PipelineError, match=r"params: baselines.pixel_size = 100 is invalid; allowed: at most "
                                            r"image_size \(64\)"):
        parse_params(raw_params(image_size=64, baselines={"pixel_size": 100}))
    assert parse_params(raw_params(image_size=64, baselines={"pixel_size": 64})).baselines.pixel_size == 64


def test_missing_and_unknown_keys_are_named():
    raw = raw_params()
    del raw["dedupe"]["candidates"]
    with pytest.raises(PipelineError, match="dedupe.candidates is missing"):
        parse_params(raw)
    with pytest.raises(PipelineError, match="unknown key split.ratio\\b"):
        parse_params(raw_params(split={"ratio": 0.5}))
    with pytest.raises(PipelineError, match="unknown key baselines.knn.weights\\b"):
        parse_params(raw_params(baselines={"knn": {"k": 3, "ties": ["random"], "weights": "distance"}}))
    with pytest.raises(PipelineError, match="unknown key tune.AlexNet\\b"):
        parse_params(raw_params(tune={"AlexNet": {}}))
    with pytest.raises(PipelineError, match="unknown key tune.VGG19.head.patience\\b"):
        parse_params(raw_params(tune={"VGG19": {"head": {"patience": 3}}}))


def test_a_params_file_with_the_old_fine_tune_section_is_told_its_new_name(tmp_path):
    old = (ROOT / "params.yaml").read_text().replace("\nfinetune:", "\nfine_tune:", 1)
    (tmp_path / "params.yaml").write_text(old)
    with pytest.raises(PipelineError, match=r"^params: fine_tune was renamed to finetune: rename the key in "
                                            r"params.yaml$"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(PipelineError, match=r"^params: tune.VGG19.fine_tune was renamed to tune.VGG19.finetune"):
        parse_params(raw_params(tune={"VGG19": {"fine_tune": {"unfreeze": 0.5}}}))
    assert parse_params(raw_params(fine_tune_lr=0.01, fine_tune_epochs=3)).fine_tune_lr == 0.01  # top-level keys stay


def test_each_backbone_needs_a_tune_entry():
    raw = raw_params()
    del raw["tune"]["VGG19"]
    with pytest.raises(PipelineError, match="add `VGG19: {}`"):
        parse_params(raw)
    parse_params(raw_params(backbones=["MobileNetV3Small"]))  # an entry beyond backbones is kept


def test_a_backbone_gets_its_own_overrides_only():
    params = parse_params(raw_params(tune={"VGG19": {"lr": 0.5, "head": {"dropout": 0.25, "units": [8]},
                                                     "finetune": {"unfreeze": 0.5}}}))
    vgg, other = params.for_backbone("VGG19"), params.for_backbone("ResNet101")
    assert (vgg.lr, vgg.head.dropout, vgg.head.units, vgg.finetune.unfreeze) == (0.5, 0.25, (8,), 0.5)
    assert (vgg.epochs, vgg.head.l2, vgg.finetune.patience) == (params.epochs, params.head.l2, params.finetune.patience)
    assert other == params and params.lr == 0.001


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


def _write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _committed(**replacements) -> str:
    """The committed params.yaml text, with the first occurrence of each key text replaced by its value."""
    text = (ROOT / "params.yaml").read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new, 1)
    return text


def test_nan_and_infinity_are_not_numbers(tmp_path):
    with pytest.raises(PipelineError, match=r"params: dedupe.min_margin = nan is invalid; allowed: a number in \[0.0"):
        load_params(_write(tmp_path, _committed(**{"min_margin: 0.005": "min_margin: .nan"})))
    with pytest.raises(PipelineError, match=r"params: augment.rotation = inf is invalid"):
        load_params(_write(tmp_path, _committed(**{"rotation: 10": "rotation: .inf"})))
    with pytest.raises(PipelineError, match=r"params: split.ratios.val = -inf is invalid"):
        parse_params(raw_params(split={"ratios": {"train": 0.7, "val": float("-inf"), "test": 0.15}}))


def test_duplicate_keys_are_refused_with_their_line(tmp_path):
    text = _committed(**{"seed: 42": "seed: 42\nseed: 43"})
    with pytest.raises(PipelineError, match=r"not valid YAML \(duplicate key 'seed' at line 5\b"):
        load_params(_write(tmp_path, text))
    text = _committed(**{"  slices: 32": "  slices: 32\n  slices: 16"})
    with pytest.raises(PipelineError, match="duplicate key 'slices'"):
        load_params(_write(tmp_path, text))


def test_aliases_fail_fast_and_deep_nesting_is_refused(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = _committed(**{"backbones: [": "bomb:\n  " + "\n  ".join(lines) + "\nbackbones: *a9\nold: ["})
    path = _write(tmp_path, bomb)
    start = time.perf_counter()
    with pytest.raises(PipelineError, match=r"not valid YAML \(anchor or alias 'a0'"):
        load_params(path)
    assert time.perf_counter() - start < 1
    with pytest.raises(PipelineError, match="not valid YAML \\(anchor or alias 'seed'"):
        load_params(_write(tmp_path, _committed(**{"seed: 42": "seed: &seed 42", "  seed: 7": "  seed: *seed"})))
    deep = _committed(**{"units: [256]": "units: " + "[" * 20000 + "]" * 20000})
    with pytest.raises(PipelineError, match="not valid YAML \\(nesting deeper than 20 levels"):
        load_params(_write(tmp_path, deep))


def test_a_file_that_is_not_utf8_is_named_with_the_offset(tmp_path):
    data = (ROOT / "params.yaml").read_bytes()
    offset = data.index(b"# split and training seed") + 2
    path = tmp_path / "params.yaml"
    path.write_bytes(data[:offset] + b"\xe9" + data[offset + 1:])
    with pytest.raises(PipelineError, match=rf"{path}: not UTF-8 \(byte 0xe9 at offset {offset}\)"):
        load_params(path)


@pytest.mark.parametrize("overrides, key", [
    ({"seed": 2**32}, "seed"),
    ({"seed": 10**30}, "seed"),
    ({"synth": {"seed": 2**32}}, "synth.seed"),
])
def test_seeds_fit_numpy(overrides, key):
    allowed = "an integer from 0 to 4294967295"
    with pytest.raises(PipelineError, match=rf"params: {key} = \d+ is invalid; allowed: {allowed}"):
        parse_params(raw_params(**overrides))
    assert parse_params(raw_params(seed=2**32 - 1, synth={"seed": 0})).seed == 2**32 - 1


def test_a_rotation_step_too_fine_for_the_range_is_refused():
    with pytest.raises(PipelineError, match=r"params: dedupe.rotation_step = 0.0001 is invalid; allowed: a step of"):
        parse_params(raw_params(dedupe={"rotation_step": 0.0001}))
    assert parse_params(raw_params(dedupe={"max_rotation": 45, "rotation_step": 0.5})).dedupe.rotation_step == 0.5


def test_weights_are_imagenet_none_or_an_existing_file_in_pretrained(tmp_path, monkeypatch):
    allowed = r"allowed: imagenet, none, or the path of an existing weights file in pretrained/ \(where DVC sees it"
    with pytest.raises(PipelineError, match=rf"params: weights = 'imagnet' is invalid; {allowed}"):
        parse_params(raw_params(weights="imagnet"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrained").mkdir()
    with pytest.raises(PipelineError, match=rf"params: weights = 'pretrained/missing.weights.h5' is invalid; {allowed}"):
        parse_params(raw_params(weights="pretrained/missing.weights.h5"))
    for outside in ("base.weights.h5", "pretrained/../base.weights.h5"):  # a file DVC would not see change
        (tmp_path / "base.weights.h5").write_bytes(b"")
        with pytest.raises(PipelineError, match=rf"params: weights = '{re.escape(outside)}' is invalid; {allowed}"):
            parse_params(raw_params(weights=outside))
    (tmp_path / "pretrained/base.weights.h5").write_bytes(b"")
    assert parse_params(raw_params(weights="pretrained/base.weights.h5")).weights == "pretrained/base.weights.h5"
    assert parse_params(raw_params(weights=str(tmp_path / "pretrained/base.weights.h5"))).weights == str(
        tmp_path / "pretrained/base.weights.h5")
    assert parse_params(raw_params(weights="imagenet")).weights == "imagenet"


@pytest.mark.parametrize("classes", [["MildDemented", "Mild_Demented"], ["NonDemented", "non-demented"], ["A", "__"]])
def test_class_names_must_differ_as_folder_names_are_matched(classes):
    subjects = dict.fromkeys(classes, 2)
    with pytest.raises(PipelineError, match=r"params: data.classes = .* is invalid; allowed: .*at least two class names"):
        parse_params(merge_params(raw_params(data={"classes": classes}), {"synth": {"subjects": subjects}}))
    assert class_key("Mild_Demented") == class_key("mild demented") == "milddemented"


def test_a_cross_check_names_its_dotted_key():
    with pytest.raises(PipelineError, match=r"^params: audit.backbone = 'EfficientNetV2B0' is invalid; "
                                            r"allowed: one of backbones: MobileNetV2, "):
        parse_params(raw_params(audit={"backbone": "EfficientNetV2B0"}))


def test_an_unknown_key_lists_the_keys_known_at_its_level():
    with pytest.raises(PipelineError, match=r"^params: unknown key baselines.knn.weights; known keys here: k, ties$"):
        parse_params(raw_params(baselines={"knn": {"k": 3, "ties": ["random"], "weights": "distance"}}))
    with pytest.raises(PipelineError, match=r"^params: unknown key colour; known keys here: seed, backbones, weights, "):
        parse_params(raw_params(colour="blue"))


@pytest.mark.parametrize("overrides, message", [
    ({"split": {"copies_in_train": "yes"}}, "split.copies_in_train = 'yes' is invalid; allowed: true or false"),
    ({"preprocess": {"encoding": "gif"}}, "preprocess.encoding = 'gif' is invalid; allowed: png or jpeg or raw"),
    ({"finetune": {"unfreeze": 2}}, "finetune.unfreeze = 2 is invalid; allowed: -1 or a number in [0.0, 1.0]"),
    ({"finetune": {"unfreeze": {"top": 1}}},
     "finetune.unfreeze = {'top': 1} is invalid; allowed: -1 or a number in [0.0, 1.0]"),
    ({"data": {"archive": "  "}}, "data.archive = '  ' is invalid; allowed: a non-empty string"),
    ({"synth": {"subjects": {"NonDemented": 0, "VeryMildDemented": 1, "MildDemented": 1, "ModerateDemented": 1}}},
     "synth.subjects.NonDemented = 0 is invalid; allowed: an integer from 1 up"),
    ({"synth": {"subjects": ["NonDemented"]}}, "synth.subjects must be a mapping of keys, got ['NonDemented']"),
    ({"data": 5}, "data must be a mapping of keys, got 5"),
])
def test_the_message_says_what_the_key_allows_in_words(overrides, message):
    with pytest.raises(PipelineError) as raised:
        parse_params(raw_params(**overrides))
    assert str(raised.value) == f"params: {message}"


def test_a_file_that_is_no_mapping_is_named_with_what_it_holds(tmp_path):
    with pytest.raises(PipelineError, match=r"^params: params.yaml must be a mapping of keys, got \['a', 'list'\]$"):
        load_params(_write(tmp_path, yaml.safe_dump(["a", "list"])))


def test_a_long_value_is_cut_to_eighty_characters_in_the_message():
    def shown(value) -> str:
        with pytest.raises(PipelineError) as raised:
            parse_params(raw_params(weights=value))
        return str(raised.value).removeprefix("params: weights = ").split(" is invalid;")[0]

    assert shown("w" * 78) == repr("w" * 78)  # 80 characters with its quotes: shown whole
    long = shown("w" * 200)
    assert len(long) == 80 and long.startswith("'www") and long.endswith("ww'")
    with pytest.raises(PipelineError) as raised:
        parse_params(raw_params(backbones=["b" * 100] * 3))
    listed = str(raised.value).removeprefix("params: backbones = ").split(" is invalid;")[0]
    assert len(listed) == 80 and listed.startswith("['bbb") and listed.endswith("...")


def test_yaml_errors_give_the_line_and_column(tmp_path):
    text = "seed: 1\nsynth:\n  seed: &s 2\n"
    with pytest.raises(PipelineError, match=r"anchor or alias 's' \(not allowed here\) at line 3, column 9\)$"):
        load_params(_write(tmp_path, text))
    with pytest.raises(PipelineError, match=r"duplicate key 'seed' at line 3, column 1\)$"):
        load_params(_write(tmp_path, "seed: 1\nlr: 2\nseed: 3\n"))
    with pytest.raises(PipelineError, match=r"nesting deeper than 20 levels at line 1, column 23\)$"):
        load_params(_write(tmp_path, "a: " + "[" * 20 + "]" * 20 + "\n"))


def test_a_value_yaml_cannot_build_is_one_clear_error(tmp_path):
    path = _write(tmp_path, _committed(**{"seed: 42": "seed: 2026-02-30"}))
    with pytest.raises(PipelineError, match=rf"^{re.escape(str(path))}: not valid YAML \(day is out of range for month\)$"):
        load_params(path)


def test_nesting_is_refused_past_twenty_levels_whatever_comes_before(tmp_path):
    def units(nested: str):
        return load_params(_write(tmp_path, _committed(**{"units: [256]": f"units: {nested}"})))

    with pytest.raises(PipelineError, match=r"params: head.units = "):  # 20 levels: read, then refused as params
        units("[" * 18 + "]" * 18)
    with pytest.raises(PipelineError, match=r"not valid YAML \(nesting deeper than 20 levels"):
        units("[" * 19 + "]" * 19)
    with pytest.raises(PipelineError, match=r"not valid YAML \(nesting deeper than 20 levels"):
        units("[1, " * 30 + "]" * 30)  # a sibling before each deeper list


def test_a_weights_path_too_long_for_the_file_system_is_invalid_not_a_crash():
    with pytest.raises(PipelineError, match=r"^params: weights = 'www.*' is invalid; allowed: imagenet, none, or the "):
        parse_params(raw_params(weights="w" * 500))
