"""params.yaml, read once, validated, and handed on as frozen pydantic models."""

import os
import re
import reprlib
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from immutabledict import immutabledict
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from pipeline.core import paths
from pipeline.core.errors import PipelineError
from pipeline.core.registry import BACKBONES

LAYOUTS = ("v1", "v2")
ENCODINGS = ("png", "jpeg", "raw")
CLASS_WEIGHTS = ("balanced", "none")
SWITCHES = ("auto", "on", "off")
KNN_TIES = ("nearest", "shrink", "random")
REDUCTIONS = ("one_vs_rest", "one_vs_one", "output_code")  # sklearn.multiclass' reductions to binary models
BINARY_BASES = ("linear_svm", "logistic_regression")  # the binary models they are made of
BASELINE_INPUTS = ("pixels", "features")
BASELINE_MODELS = (*(f"knn_{ties}" for ties in KNN_TIES), "tree_gini", "tree_entropy", "linear_svm", "rbf_svm",
                   "logistic_regression")
MAX_ROTATIONS = 90  # most rotations either way dedupe may try per copy (max_rotation / rotation_step)
MAX_DEPTH = 20  # deepest nesting of the YAML file
# the training params a backbone may set for itself under tune.<backbone>, as dotted keys of params.yaml
TUNABLE = ("lr", "epochs", "batch_size", "fine_tune_lr", "fine_tune_epochs", "head.units", "head.dropout", "head.l2",
           "finetune.unfreeze")
REPR_CHARS = 80  # longest value repr in an error message
RENAMED = {"fine_tune": "finetune"}  # keys params.yaml once had, at any level -> their names now


def class_key(name: str) -> str:
    """A class name as archive folders are matched to it: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _invalid(allowed: str = "", key: str = "") -> PydanticCustomError:
    """A broken rule at the validator's place (+ `key`); `allowed` defaults to the field's own text."""
    return PydanticCustomError("params", "invalid", {"allowed": allowed, "key": key})


def _distinct(key: Callable[[str], str] = str) -> AfterValidator:
    """Names that stay distinct, and non-empty, under `key`."""

    def check(names: tuple[str, ...]) -> tuple[str, ...]:
        if len({key(name) for name in names} - {""}) != len(names):
            raise _invalid()
        return names
    return AfterValidator(check)


class _Validated:
    """A mapping validated as `schema` (a model or dict type), then kept as `keep` makes it from its (key, value) pairs,
    in order: a tuple of the pairs, or an immutabledict (read-only and hashable, as a frozen Params needs)."""

    def __init__(self, schema: Any, keep: Callable[[Any], Any]):
        self.schema = schema
        self.adapter = TypeAdapter(schema)
        self.keep = keep

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def validate(self, raw: Any) -> Any:
        value = self.adapter.validate_python(raw)
        return self.keep(value.items() if isinstance(value, dict) else value)  # a model iterates as its pairs


def _int(low: int, high: int | None = None) -> Any:
    return Annotated[int, Field(ge=low, le=high)]


def _num(low: float, high: float, open_low: bool = False) -> Any:
    return Annotated[float, Field(gt=low, le=high) if open_low else Field(ge=low, le=high)]


def _list(item: Any, description: str, min_length: int = 0, *checks: Any) -> Any:
    """A YAML list, kept as a tuple."""
    return Annotated[tuple[item, ...], Field(strict=False, min_length=min_length, description=description), *checks]


Seed = _int(0, 2**32 - 1)  # what numpy and scikit-learn accept
Share = _num(0.0, 1.0, open_low=True)
Text = Annotated[str, Field(pattern=r"\S")]
Name = Annotated[str, Field(min_length=1)]
BackboneName = Literal[tuple(BACKBONES)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


SOURCES = ("archive", "folder", "tfds:<name>")
Source = Annotated[str, Field(pattern=r"^(archive|folder|tfds:[a-z0-9_]+(/[A-Za-z0-9_.]+)?(:[0-9.]+)?)$",
                              description=" or ".join(SOURCES))]


class DataParams(_Model):
    source: Source  # where the images come from: the MRI archive, class folders, or a TFDS dataset
    archive: Text  # the archive or the class folders (unused by tfds:)
    tfds_dir: str  # TFDS' data dir for tfds: sources; empty: TFDS' default (~/tensorflow_datasets)
    groups: str  # folder source: a CSV (path, group) naming each file's group; `pixels`: MRI slices chained into subjects
    # class names, in order (ordinal order when ordinal); empty: the source's own (folder names, TFDS labels)
    classes: _list(Name, "an empty list or at least two class names, distinct even lower-cased with only letters "
                   "and digits kept", 0, _distinct(class_key))
    ordinal: bool  # the classes are ordered (QWK is reported only then)
    negative_class: str  # the "none" class of the binary view (any class vs it); empty: no binary view

    def named_classes(self) -> dict:
        """{"classes": the classes} when params name them, for a stage to check its inputs against; else {}."""
        return {"classes": self.classes} if self.classes else {}

    @property
    def reads_demo(self) -> bool:
        """Whether this run reads the synth stage's demo archive (the archive source at its path)."""
        return self.source == "archive" and Path(self.archive) == paths.DEMO_ARCHIVE

    @model_validator(mode="after")
    def _classes_fit_the_source(self) -> "DataParams":
        if len(self.classes) == 1 or (self.source == "archive" and not self.classes):
            raise _invalid("at least two class names" + (" (the archive source names none)" if not self.classes
                                                         else ""), "classes")
        if self.negative_class and self.classes and self.negative_class not in self.classes:
            raise _invalid(f"empty or one of data.classes: {', '.join(self.classes)}", "negative_class")
        return self


class SynthParams(_Model):
    seed: Seed
    # (class, subjects) pairs, in data.classes order
    subjects: Annotated[tuple[tuple[str, int], ...], _Validated(dict[str, _int(1)], tuple)]
    slices: _int(2, 128)
    copies_per_class: _int(0)
    duplicates: _int(0)
    layout: Literal[LAYOUTS]
    opaque_names: bool  # originals named by UUID-like names that carry no subject


class DedupeParams(_Model):
    workers: _int(0, 256)
    slices_per_subject: _int(1)
    separation: _num(1.0, 10.0)  # without a name rule: how much longer any rejoining of two chains must be
    min_score: _num(0.0, 1.0)
    min_margin: _num(0.0, 1.0)
    candidates: _int(1, 256)
    max_rotation: _num(0.0, 45.0)
    rotation_step: _num(0.0, 45.0, open_low=True)

    @model_validator(mode="after")
    def _few_rotations(self) -> "DedupeParams":
        if self.max_rotation / self.rotation_step > MAX_ROTATIONS:
            least = self.max_rotation / MAX_ROTATIONS
            raise _invalid(f"a step of at least max_rotation / {MAX_ROTATIONS} = {least:g}", "rotation_step")
        return self


class _Ratios(_Model):
    train: Share
    val: Share
    test: Share

    @model_validator(mode="after")
    def _add_up_to_one(self) -> "_Ratios":
        if abs(sum(share for _, share in self) - 1.0) > 1e-6:
            raise _invalid(f"shares for {', '.join(SPLITS)} that add up to 1")
        return self


SPLITS = tuple(_Ratios.model_fields)


class SplitParams(_Model):
    ratios: Annotated[immutabledict[str, float], _Validated(_Ratios, immutabledict)]  # split -> share, in SPLITS order
    copies_in_train: bool
    source_splits: bool  # use a source's own train/val/test when it ships them (TFDS); false: split by group here
    drop_shared_images: bool  # source splits: drop images pixel-identical to one in an earlier split
    folds: _int(1, 100)  # 1: one train/val/test split; k: k folds by subject, each subject in exactly one fold's test


class PreprocessParams(_Model):
    encoding: Literal[ENCODINGS]
    shard_size: _int(1)


class HeadParams(_Model):
    units: _list(_int(1), "a list of positive integers (may be empty)")  # dense layers before the softmax
    dropout: _num(0.0, 0.95)
    l2: _num(0.0, 1.0)
    class_weight: Literal[CLASS_WEIGHTS]
    patience: _int(1)  # epochs without a better val loss before stopping


class FinetuneParams(_Model):
    # share of the base's layers unfrozen from the top; -1: the backbone's default
    unfreeze: Annotated[Union[Literal[-1], _num(0.0, 1.0)], AfterValidator(float)]
    patience: _int(1)
    mixed_precision: Literal[SWITCHES]  # 'auto' (on a GPU), 'on' or 'off'
    xla: bool
    max_train_images: _int(0)  # images per fine-tuning epoch (0: all), to bound CPU time


class AugmentParams(_Model):
    views: _int(0, 16)  # augmented views per train image in the cached features (besides the image itself)
    flip: bool
    rotation: _num(0.0, 180.0)  # degrees either way
    zoom: _num(0.0, 0.9)  # share either way
    contrast: _num(0.0, 0.9)
    brightness: _num(0.0, 0.9)


class EvaluateParams(_Model):
    bootstrap: _int(10)  # subject-bootstrap resamples for the 95% intervals
    latency_runs: _int(1)  # timed batches per latency figure
    batch_size: _int(1, 4096)  # images per inference batch in the features and evaluate stages


class CompareParams(_Model):
    sensitivity: Share  # sensitivity target of the "any dementia" operating point
    reference: str  # the model the others are tested against, named before seeing test; "": highest val balanced acc.


class ExplainParams(_Model):
    per_class: _int(1, 100)  # test scans per class in each backbone's Grad-CAM grid, drawn with `seed`


class AuditParams(_Model):
    backbone: BackboneName  # whose cached features the audit's model reads
    repeats: _int(1, 1000)  # fresh random splits and shuffled labels per split
    test_share: _num(0.0, 0.9, open_low=True)  # share of the pool in test, for the per-image random splits


class KnnParams(_Model):
    k: _int(1, 1000)
    ties: _list(Literal[KNN_TIES], f"a non-empty list of distinct rules from {', '.join(KNN_TIES)}", 1, _distinct())


class ReductionsParams(_Model):
    input: Literal[BASELINE_INPUTS]  # what the reductions read: the pixels or the backbone's features
    strategies: _list(Literal[REDUCTIONS], f"a list of distinct names from {', '.join(REDUCTIONS)} (may be empty)", 0,
                      _distinct())
    base_models: _list(Literal[BINARY_BASES], f"a non-empty list of distinct names from {', '.join(BINARY_BASES)}",
                       1, _distinct())
    code_size: _num(0.0, 10.0, open_low=True)  # output_code: int(code_size * classes) binary models


class FoldStudyParams(_Model):
    model: Literal[BASELINE_MODELS]  # the baseline whose cross-validated estimate is studied
    input: Literal[BASELINE_INPUTS]  # what it reads: the pixels or the backbone's features
    folds: _list(_int(2, 100), "a list of distinct fold counts from 2 to 100 (may be empty)", 0, _distinct())
    leave_one_subject_out: bool  # also LeaveOneGroupOut by subject (as many fits as subjects in train and val)
    repeats: _int(1, 100)  # reshuffled fold assignments per fold count


class BaselinesParams(_Model):
    backbone: BackboneName  # whose cached features the classical models read
    pixel_size: _int(4, 128)  # side of the images the classical models also read as raw pixels
    folds: _int(2, 100)  # grouped cross-validation folds over train and val
    knn: KnnParams
    reductions: ReductionsParams
    fold_study: FoldStudyParams  # "what is the optimal number of folds?" on the data at hand


class Params(_Model):
    seed: Seed
    backbones: _list(BackboneName, f"a non-empty list of distinct names from {', '.join(BACKBONES)}", 1, _distinct())
    weights: Annotated[Text, Field(description=f"imagenet, none, or the path of an existing weights file in "
                                               f"{paths.PRETRAINED}/ (where DVC sees it change)")]
    image_size: _int(32, 1024)
    batch_size: _int(1, 4096)
    lr: Share
    epochs: _int(1)
    fine_tune_lr: Share
    fine_tune_epochs: _int(0)
    data: DataParams
    synth: SynthParams
    dedupe: DedupeParams
    split: SplitParams
    preprocess: PreprocessParams
    head: HeadParams
    finetune: FinetuneParams
    augment: AugmentParams
    evaluate: EvaluateParams
    compare: CompareParams
    explain: ExplainParams
    audit: AuditParams
    baselines: BaselinesParams
    tune: "TuneParams"  # per-backbone overrides of the TUNABLE keys, and how `select` chose them

    def for_backbone(self, name: str) -> "Params":
        """These params with tune.<name>'s overrides in place: what the backbone's train and finetune stages read."""
        return _overridden(self, getattr(self.tune, name, None))

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, weights: str) -> str:
        if weights in ("imagenet", "none"):
            return weights
        try:
            found = Path(weights).is_file()
        except OSError:  # a name the file system refuses, such as one too long
            found = False
        if not found or not Path(os.path.abspath(weights)).is_relative_to(paths.PRETRAINED.absolute()):
            raise _invalid()
        return weights

    @field_validator("synth")
    @classmethod
    def _a_count_per_class(cls, synth: SynthParams, info: ValidationInfo) -> SynthParams:
        data = info.data.get("data")
        if data is None or not data.reads_demo:  # wrong (and reported), or the demo is not read: synth writes none
            return synth
        classes, counts = data.classes, dict(synth.subjects)
        if set(counts) != set(classes):
            raise _invalid(f"a count for each of data.classes: {', '.join(classes)}", "subjects")
        return synth.model_copy(update={"subjects": tuple((name, counts[name]) for name in classes)})

    @model_validator(mode="after")
    def _compared_backbones(self) -> "Params":
        for key, name in (("audit.backbone", self.audit.backbone), ("baselines.backbone", self.baselines.backbone)):
            if name not in self.backbones:
                raise _invalid(f"one of backbones: {', '.join(self.backbones)}", key)
        if self.baselines.pixel_size > self.image_size:
            raise _invalid(f"at most image_size ({self.image_size})", "baselines.pixel_size")
        if self.compare.reference and self.compare.reference not in self.backbones:
            raise _invalid(f"'' (the highest val balanced accuracy) or one of backbones: {', '.join(self.backbones)}",
                           "compare.reference")
        return self

    @model_validator(mode="after")
    def _tune_entries(self) -> "Params":
        for name in self.backbones:  # DVC's train@<name> and finetune@<name> read tune.<name>: it must exist
            if getattr(self.tune, name) is None:
                raise _invalid(f"an entry for each of backbones; add `{name}: {{}}` (no overrides) under tune",
                               f"tune.{name}")
        return self


def _optional(model: type[BaseModel], keys: tuple[str, ...], name: str) -> type[BaseModel]:
    """A model of `model`'s fields named by dotted `keys`, each optional (absent: not overridden), checked alike."""
    fields, nested = {}, {}
    for key in keys:
        field, _, rest = key.partition(".")
        if rest:
            nested.setdefault(field, []).append(rest)
        else:
            info = model.model_fields[field]
            fields[field] = (Annotated[(info.annotation, *info.metadata)], Field(None, description=info.description))
    for field, rests in nested.items():
        inner = model.model_fields[field].annotation
        fields[field] = (_optional(inner, tuple(rests), f"{inner.__name__}Tune"), None)
    return create_model(name, __base__=_Model, **fields)


def _overridden(model: BaseModel, overrides: BaseModel | None) -> BaseModel:
    """`model` with each value `overrides` sets (recursively) in place of its own."""
    if overrides is None:
        return model
    update = {key: _overridden(getattr(model, key), value) if isinstance(value, BaseModel) else value
              for key, value in overrides if value is not None}
    return model.model_copy(update=update)


class Selection(_Model):
    at: Text  # when `python -m pipeline select` wrote the entries (UTC)
    metric: Text  # the val metric it ranked on
    experiments: _int(1)  # how many runs (the baseline commit and its experiments) it chose among


TuneEntry = _optional(Params, TUNABLE, "TuneEntry")
TuneParams = create_model("TuneParams", __base__=_Model, selected=(Selection | None, ...),
                          **{name: (TuneEntry, None) for name in BACKBONES})
Params.model_rebuild()


def tuned_values(raw: dict, backbone: str) -> dict[str, Any]:
    """A backbone's value of each TUNABLE key in a params mapping as loaded: its tune entry's, else the top-level one."""
    entry = ((raw.get("tune") or {}).get(backbone)) or {}
    return {key: _get(entry, key, _get(raw, key)) for key in TUNABLE}


def nested(values: dict[str, Any]) -> dict:
    """Dotted keys and their values as the nested mapping params.yaml writes them."""
    tree: dict = {}
    for key, value in values.items():
        *parents, last = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return tree


def _get(mapping: dict, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(mapping, dict) or part not in mapping:
            return default
        mapping = mapping[part]
    return mapping


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading 5e-05 as a number (as `dvc exp run -S` writes floats), that refuses
    anchors and aliases, nesting deeper than MAX_DEPTH and duplicate keys."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if event.anchor is not None:
            raise yaml.composer.ComposerError(None, None, f"anchor or alias {event.anchor!r} (not allowed here)",
                                              event.start_mark)
        if self.depth == MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # refused as such below
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return yaml.constructor.BaseConstructor.construct_mapping(self, node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def load_params(path: Path = paths.PARAMS) -> Params:
    """Read and validate params.yaml; a wrong value stops here with its key named."""
    if not path.is_file():
        raise PipelineError(f"{path}: parameter file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PipelineError(f"{path}: not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})") from None
    try:
        raw = yaml.load(text, Loader=_Loader) or {}
    except (yaml.YAMLError, ValueError) as error:
        raise PipelineError(f"{path}: not valid YAML ({_problem(error)})") from None
    return parse_params(raw)


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into a Params object."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        renamed = [item for item in errors if item["type"] == "extra_forbidden" and item["loc"][-1] in RENAMED]
        raise _message((renamed or errors)[0], raw) from None  # a renamed key, not its new name, is what is wrong


def _problem(error: Exception) -> str:
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return " ".join(str(error).split())
    return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"


def _message(error: ErrorDetails, raw: Any) -> PipelineError:
    """One pydantic error as the one-line PipelineError that names the full key."""
    loc, ctx = error["loc"], error.get("ctx", {})
    if error["type"] == "params" and ctx["key"]:
        loc += tuple(ctx["key"].split("."))
    if error["type"] == "missing":
        return PipelineError(f"params: {_dotted(loc)} is missing")
    if error["type"] == "extra_forbidden" and loc[-1] in RENAMED:
        new = _dotted((*loc[:-1], RENAMED[loc[-1]]))
        return PipelineError(f"params: {_dotted(loc)} was renamed to {new}: rename the key in params.yaml")
    if error["type"] == "extra_forbidden":
        known = ", ".join(_schema(loc[:-1])[1].model_fields)
        return PipelineError(f"params: unknown key {_dotted(loc)}; known keys here: {known}")
    key, value = (), raw
    for part in loc:  # down to the deepest mapping key: a list or a union is reported whole
        if not isinstance(value, dict) or part not in value:
            break
        key, value = (*key, part), value[part]
    if error["type"] in ("model_type", "dict_type"):
        return PipelineError(f"params: {_dotted(key) or 'params.yaml'} must be a mapping of keys, got {_short(value)}")
    allowed = ctx.get("allowed") or _allowed(_schema(key)[0])
    return PipelineError(f"params: {_dotted(key)} = {_short(value)} is invalid; allowed: {allowed}")


def _schema(key: tuple) -> tuple[FieldInfo | None, Any]:
    """The field at a key of Params, and the type that validates its value."""
    info, schema = None, Params
    for part in key:
        if get_origin(schema) is dict:
            info = FieldInfo.from_annotation(get_args(schema)[1])
        else:
            info = schema.model_fields[part]
        schema = next((item.schema for item in info.metadata if isinstance(item, _Validated)), info.annotation)
    return info, schema


def _allowed(info: FieldInfo) -> str:
    """What a field allows, in words, from its declared type and constraints."""
    if info.description:
        return info.description
    kind, limits = info.annotation, {name: getattr(item, name) for item in info.metadata
                                     for name in ("ge", "gt", "le") if getattr(item, name, None) is not None}
    if kind is bool:
        return "true or false"
    if kind is int:
        return f"an integer from {limits['ge']}" + (f" to {limits['le']}" if "le" in limits else " up")
    if kind is float:
        low = f"({limits['gt']}" if "gt" in limits else f"[{limits['ge']}"
        return f"a number in {low}, {limits['le']}]"
    if get_origin(kind) is Literal:
        return " or ".join(map(str, get_args(kind)))
    if get_origin(kind) is Union:
        return " or ".join(_allowed(FieldInfo.from_annotation(arg)) for arg in get_args(kind))
    return "a non-empty string"


def _dotted(key: tuple) -> str:
    return ".".join(map(str, key))


def _short(value: Any) -> str:
    """A repr cut to REPR_CHARS, fast for any size of value."""
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = REPR_CHARS
    text = shortener.repr(value)
    return text if len(text) <= REPR_CHARS else text[:REPR_CHARS - 3] + "..."


def write_tune(path: Path, entries: dict[str, dict], selected: dict) -> None:
    """Put tune.<backbone> for each of `entries` and tune.selected into params.yaml, each as one flow mapping in place
    of its old value; every other byte of the file (comments, other keys, their layout) stays as it was."""
    text = path.read_text(encoding="utf-8")
    root = yaml.compose(text, Loader=_Loader)
    tune = next((value for key, value in root.value if key.value == "tune"), None)
    if not isinstance(tune, yaml.MappingNode):
        raise PipelineError(f"{path}: no tune: mapping to write into; add one (see the committed params.yaml)")
    spans = {key.value: (key.end_mark.index, _text_end(value)) for key, value in tune.value}
    updates = {**entries, "selected": selected}
    missing = sorted(set(updates) - set(spans))
    if missing:
        raise PipelineError(f"{path}: tune has no entry for {', '.join(missing)}; add `{missing[0]}: {{}}` under tune")
    for name in sorted(updates, key=lambda name: spans[name][0], reverse=True):  # from the end: earlier spans hold
        start, end = spans[name]
        flow = yaml.safe_dump(updates[name], default_flow_style=True, sort_keys=False, width=2**16).strip()
        text = f"{text[:start]}: {flow}{text[end:]}"
    path.write_text(text, encoding="utf-8")


def _text_end(node: yaml.Node) -> int:
    """Where a node's own text ends: a block collection's last item, not the comments and indent after it."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _text_end(last[1] if isinstance(node, yaml.MappingNode) else last)
    return node.end_mark.index
