"""Shared fixtures: tiny params and a tiny synthetic archive, built once per test session."""

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.params import Params, parse_params
from pipeline.synth import truth_path_for, write_archive, write_truth

ROOT = Path(__file__).resolve().parents[1]
TINY_SYNTH = {
    "subjects": {"NonDemented": 3, "VeryMildDemented": 3, "MildDemented": 3, "ModerateDemented": 2},
    "slices": 8,
    "copies_per_class": 30,
    "duplicates": 3,
}
TINY_DEDUPE = {"slices_per_subject": 8}


def raw_params(**sections) -> dict:
    """The committed params.yaml as a dict, with `sections` merged over it one level deep."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in sections.items():
        if isinstance(value, dict):
            raw[key] = {**raw[key], **copy.deepcopy(value)}
        else:
            raw[key] = value
    return raw


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    return parse_params(raw_params(synth=TINY_SYNTH, dedupe=TINY_DEDUPE, image_size=32))


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory, tiny_params) -> Path:
    """A small v1 archive with its truth file beside it (`<archive>-truth.csv`)."""
    root = tmp_path_factory.mktemp("raw") / "demo"
    truth = write_archive(root, tiny_params.data.classes, tiny_params.synth)
    write_truth(truth_path_for(root), truth)
    return root
