"""What a source says about its images, beside the index: classes, channels, where the files are, its own splits."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.core.errors import require_file
from pipeline.core.files import write_json


@dataclass(frozen=True)
class SourceInfo:
    source: str  # data.source: archive, folder or tfds:<name>
    root: str  # the folder the index's paths are relative to
    classes: tuple[str, ...]  # label names, in order (a label's index is its position)
    channels: int  # 1 (gray) or 3 (RGB), as the images are stored and read
    own_splits: bool  # whether the index's `split` column holds the source's own train/val/test


def write_source_info(path: Path, info: SourceInfo) -> None:
    write_json(path, {**asdict(info), "classes": list(info.classes)})


def read_source_info(path: Path) -> SourceInfo:
    """The dedupe stage's source.json, or a PipelineError saying how to make it."""
    require_file(path, "dedupe")
    values = json.loads(path.read_text(encoding="utf-8"))
    return SourceInfo(**{**values, "classes": tuple(values["classes"])})
