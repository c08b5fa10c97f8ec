"""params.yaml, read once, validated, and handed on as frozen objects."""

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import PipelineError

LAYOUTS = ("v1", "v2")
SPLITS = ("train", "val", "test")
ENCODINGS = ("png", "jpeg", "raw")
CLASS_WEIGHTS = ("balanced", "none")
SWITCHES = ("auto", "on", "off")
KNN_TIES = ("nearest", "shrink", "random")


@dataclass(frozen=True)
class DataParams:
    archive: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class SynthParams:
    seed: int
    subjects: tuple[tuple[str, int], ...]  # (class, subjects), in data.classes order
    slices: int
    copies_per_class: int
    duplicates: int
    layout: str


@dataclass(frozen=True)
class DedupeParams:
    workers: int
    slices_per_subject: int
    min_score: float
    min_margin: float
    candidates: int
    max_rotation: float
    rotation_step: float


@dataclass(frozen=True)
class SplitParams:
    ratios: tuple[tuple[str, float], ...]  # (split, share), in SPLITS order
    copies_in_train: bool


@dataclass(frozen=True)
class PreprocessParams:
    encoding: str
    shard_size: int


@dataclass(frozen=True)
class HeadParams:
    units: tuple[int, ...]  # dense layers before the softmax
    dropout: float
    l2: float
    class_weight: str  # 'balanced' or 'none'
    patience: int  # epochs without a better val loss before stopping


@dataclass(frozen=True)
class FineTuneParams:
    unfreeze: float  # share of the base's layers unfrozen from the top; -1: the backbone's default
    patience: int
    mixed_precision: str  # 'auto' (on a GPU), 'on' or 'off'
    xla: bool
    max_train_images: int  # images per fine-tuning epoch (0: all), to bound CPU time


@dataclass(frozen=True)
class AugmentParams:
    views: int  # augmented views per train image in the cached features (besides the image itself)
    flip: bool
    rotation: float  # degrees either way
    zoom: float  # share either way
    contrast: float
    brightness: float


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int  # subject-bootstrap resamples for the 95% intervals
    latency_runs: int  # timed batches per latency figure


@dataclass(frozen=True)
class CompareParams:
    sensitivity: float  # sensitivity target of the "any dementia" operating point


@dataclass(frozen=True)
class AuditParams:
    backbone: str  # whose cached features the audit's model reads
    repeats: int  # fresh random splits and shuffled labels per split
    test_share: float  # share of the pool in test, for the per-image random splits


@dataclass(frozen=True)
class KnnParams:
    k: int
    ties: tuple[str, ...]  # tie-breaking rules (KNN_TIES), one kNN model each


@dataclass(frozen=True)
class BaselinesParams:
    backbone: str  # whose cached features the classical models read
    folds: int  # grouped cross-validation folds over train and val
    knn: KnnParams


@dataclass(frozen=True)
class Params:
    seed: int
    backbones: tuple[str, ...]
    weights: str
    image_size: int
    batch_size: int
    lr: float
    epochs: int
    fine_tune_lr: float
    fine_tune_epochs: int
    data: DataParams
    synth: SynthParams
    dedupe: DedupeParams
    split: SplitParams
    preprocess: PreprocessParams
    head: HeadParams
    fine_tune: FineTuneParams
    augment: AugmentParams
    evaluate: EvaluateParams
    compare: CompareParams
    audit: AuditParams
    baselines: BaselinesParams


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads 5e-05 as a number (YAML 1.2, as `dvc exp run -S` writes floats)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml; a wrong value stops here with its key named."""
    if not path.is_file():
        raise PipelineError(f"{path}: parameter file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML ({error})") from None
    return parse_params(raw)


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into a Params object."""
    root = _Section(raw, "")
    data = _data(root.section("data"))
    backbones = root.names("backbones")
    params = Params(
        seed=root.integer("seed", low=0),
        backbones=backbones,
        weights=root.weights("weights"),
        image_size=root.integer("image_size", low=32, high=1024),
        batch_size=root.integer("batch_size", low=1, high=4096),
        lr=root.number("lr", low=0.0, high=1.0, open_low=True),
        epochs=root.integer("epochs", low=1),
        fine_tune_lr=root.number("fine_tune_lr", low=0.0, high=1.0, open_low=True),
        fine_tune_epochs=root.integer("fine_tune_epochs", low=0),
        data=data,
        synth=_synth(root.section("synth"), data.classes),
        dedupe=_dedupe(root.section("dedupe")),
        split=_split(root.section("split")),
        preprocess=_preprocess(root.section("preprocess")),
        head=_head(root.section("head")),
        fine_tune=_fine_tune(root.section("fine_tune")),
        augment=_augment(root.section("augment")),
        evaluate=_evaluate(root.section("evaluate")),
        compare=_compare(root.section("compare")),
        audit=_audit(root.section("audit"), backbones),
        baselines=_baselines(root.section("baselines"), backbones),
    )
    root.reject_unknown(Params)
    return params


def _data(section: "_Section") -> DataParams:
    classes = section.names("classes")
    if len(classes) < 2:
        section.fail("classes", classes, "at least two class names")
    params = DataParams(archive=section.text("archive"), classes=classes)
    section.reject_unknown(DataParams)
    return params


def _synth(section: "_Section", classes: tuple[str, ...]) -> SynthParams:
    subjects = section.counts("subjects", classes)
    params = SynthParams(
        seed=section.integer("seed", low=0),
        subjects=subjects,
        slices=section.integer("slices", low=2, high=128),
        copies_per_class=section.integer("copies_per_class", low=0),
        duplicates=section.integer("duplicates", low=0),
        layout=section.choice("layout", LAYOUTS),
    )
    section.reject_unknown(SynthParams)
    return params


def _dedupe(section: "_Section") -> DedupeParams:
    params = DedupeParams(
        workers=section.integer("workers", low=0, high=256),
        slices_per_subject=section.integer("slices_per_subject", low=1),
        min_score=section.number("min_score", low=0.0, high=1.0),
        min_margin=section.number("min_margin", low=0.0, high=1.0),
        candidates=section.integer("candidates", low=1, high=256),
        max_rotation=section.number("max_rotation", low=0.0, high=45.0),
        rotation_step=section.number("rotation_step", low=0.0, high=45.0, open_low=True),
    )
    section.reject_unknown(DedupeParams)
    return params


def _split(section: "_Section") -> SplitParams:
    ratios = section.section("ratios")
    shares = tuple((name, ratios.number(name, low=0.0, high=1.0, open_low=True)) for name in SPLITS)
    ratios.reject_unknown_names(SPLITS)
    total = sum(share for _, share in shares)
    if abs(total - 1.0) > 1e-6:
        section.fail("ratios", dict(shares), "shares for train, val and test that add up to 1")
    params = SplitParams(ratios=shares, copies_in_train=section.flag("copies_in_train"))
    section.reject_unknown(SplitParams)
    return params


def _preprocess(section: "_Section") -> PreprocessParams:
    params = PreprocessParams(
        encoding=section.choice("encoding", ENCODINGS),
        shard_size=section.integer("shard_size", low=1),
    )
    section.reject_unknown(PreprocessParams)
    return params


def _head(section: "_Section") -> HeadParams:
    params = HeadParams(
        units=section.sizes("units"),
        dropout=section.number("dropout", low=0.0, high=0.95),
        l2=section.number("l2", low=0.0, high=1.0),
        class_weight=section.choice("class_weight", CLASS_WEIGHTS),
        patience=section.integer("patience", low=1),
    )
    section.reject_unknown(HeadParams)
    return params


def _fine_tune(section: "_Section") -> FineTuneParams:
    unfreeze = section.get("unfreeze")
    if unfreeze != -1:
        unfreeze = section.number("unfreeze", low=0.0, high=1.0)
    params = FineTuneParams(
        unfreeze=float(unfreeze),
        patience=section.integer("patience", low=1),
        mixed_precision=section.choice("mixed_precision", SWITCHES),
        xla=section.flag("xla"),
        max_train_images=section.integer("max_train_images", low=0),
    )
    section.reject_unknown(FineTuneParams)
    return params


def _augment(section: "_Section") -> AugmentParams:
    params = AugmentParams(
        views=section.integer("views", low=0, high=16),
        flip=section.flag("flip"),
        rotation=section.number("rotation", low=0.0, high=180.0),
        zoom=section.number("zoom", low=0.0, high=0.9),
        contrast=section.number("contrast", low=0.0, high=0.9),
        brightness=section.number("brightness", low=0.0, high=0.9),
    )
    section.reject_unknown(AugmentParams)
    return params


def _evaluate(section: "_Section") -> EvaluateParams:
    params = EvaluateParams(
        bootstrap=section.integer("bootstrap", low=10),
        latency_runs=section.integer("latency_runs", low=1),
    )
    section.reject_unknown(EvaluateParams)
    return params


def _compare(section: "_Section") -> CompareParams:
    params = CompareParams(sensitivity=section.number("sensitivity", low=0.0, high=1.0, open_low=True))
    section.reject_unknown(CompareParams)
    return params


def _audit(section: "_Section", backbones: tuple[str, ...]) -> AuditParams:
    params = AuditParams(
        backbone=section.choice("backbone", backbones),
        repeats=section.integer("repeats", low=1, high=1000),
        test_share=section.number("test_share", low=0.0, high=0.9, open_low=True),
    )
    section.reject_unknown(AuditParams)
    return params


def _baselines(section: "_Section", backbones: tuple[str, ...]) -> BaselinesParams:
    params = BaselinesParams(
        backbone=section.choice("backbone", backbones),
        folds=section.integer("folds", low=2, high=100),
        knn=_knn(section.section("knn")),
    )
    section.reject_unknown(BaselinesParams)
    return params


def _knn(section: "_Section") -> KnnParams:
    ties = section.names("ties")
    if not set(ties) <= set(KNN_TIES):
        section.fail("ties", list(ties), "a non-empty list of distinct rules from " + ", ".join(KNN_TIES))
    params = KnnParams(k=section.integer("k", low=1, high=1000), ties=ties)
    section.reject_unknown(KnnParams)
    return params


class _Section:
    """One mapping of params.yaml, with typed getters whose errors name the full key."""

    def __init__(self, raw: Any, prefix: str):
        if not isinstance(raw, dict):
            where = prefix.rstrip(".") or "params.yaml"
            raise PipelineError(f"params: {where} must be a mapping of keys, got {raw!r}")
        self.raw = raw
        self.prefix = prefix

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise PipelineError(f"params: {self.prefix}{key} = {value!r} is invalid; allowed: {allowed}")

    def get(self, key: str) -> Any:
        if key not in self.raw:
            raise PipelineError(f"params: {self.prefix}{key} is missing")
        return self.raw[key]

    def section(self, key: str) -> "_Section":
        return _Section(self.get(key), f"{self.prefix}{key}.")

    def integer(self, key: str, low: int, high: int | None = None) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, value, f"an integer >= {low}" + (f" and <= {high}" if high else ""))
        if value < low or (high is not None and value > high):
            self.fail(key, value, f"an integer from {low}" + (f" to {high}" if high else " up"))
        return value

    def number(self, key: str, low: float, high: float, open_low: bool = False) -> float:
        value = self.get(key)
        interval = f"a number in {'(' if open_low else '['}{low}, {high}]"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, value, interval)
        if value < low or value > high or (open_low and value == low):
            self.fail(key, value, interval)
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            self.fail(key, value, "true or false")
        return value

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "a non-empty string")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.get(key)
        if value not in allowed:
            self.fail(key, value, " or ".join(allowed))
        return value

    def weights(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "imagenet, none, or a path to a weights file")
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        ok = isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
        if not ok or len(set(value)) != len(value):
            self.fail(key, value, "a non-empty list of distinct names")
        return tuple(value)

    def sizes(self, key: str) -> tuple[int, ...]:
        value = self.get(key)
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        if not ok:
            self.fail(key, value, "a list of positive integers (may be empty)")
        return tuple(value)

    def counts(self, key: str, names: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        counts = self.section(key)
        counts.reject_unknown_names(names)
        return tuple((name, counts.integer(name, low=1)) for name in names)

    def reject_unknown(self, cls: type) -> None:
        self.reject_unknown_names(tuple(field.name for field in fields(cls)))

    def reject_unknown_names(self, known: tuple[str, ...]) -> None:
        unknown = sorted(set(self.raw) - set(known))
        if unknown:
            raise PipelineError(
                f"params: unknown key {self.prefix}{unknown[0]}; known keys here: {', '.join(known)}"
            )
