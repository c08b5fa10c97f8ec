"""Find every file of an archive and what the archive's layout says it is."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.params import class_key

ORIGINAL_PREFIXES = {
    "NonDemented": "nonDem",
    "VeryMildDemented": "verymildDem",
    "MildDemented": "mildDem",
    "ModerateDemented": "moderateDem",
}
LAYOUTS_LOOKED_FOR = (
    "v1 (OriginalDataset/<Class>, AugmentedAlzheimerDataset/<Class>), "
    "v2 (data/val/<Class>, data/train/<Class>), "
    "4-class original (train/<Class>, test/<Class>), "
    "plain (<Class>/*)"
)
UUID_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


@dataclass(frozen=True)
class FoundFile:
    path: str  # relative to the archive root, '/'-separated
    label: str  # class name, '' when the file is in no class folder
    kind: str  # 'original' or 'copy'
    layout: str  # 'v1', 'v2', '4-class', 'plain', or '' outside any class folder


def archive_folders(layout: str) -> tuple[Path, Path]:
    """The originals' and copies' folders of a layout the synth stage writes."""
    if layout == "v1":
        return Path("OriginalDataset"), Path("AugmentedAlzheimerDataset")
    return Path("data/val"), Path("data/train")


def find_files(root: Path, classes: tuple[str, ...]) -> tuple[list[FoundFile], list[str]]:
    """Every file under `root` with its class and kind, and the class folders that hold no file."""
    if not root.is_dir():
        raise PipelineError(f"data.archive {root}: no such folder; looked for layouts {LAYOUTS_LOOKED_FOR}")
    by_key = {class_key(name): name for name in classes}
    found, empty = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        folder = Path(folder)
        relative = folder.relative_to(root)
        class_dir = _class_dir(relative, by_key)
        if class_dir is not None and relative == class_dir and not files and not subfolders:
            empty.append(relative.as_posix())
        if class_dir is None:
            found += [FoundFile((relative / name).as_posix(), "", "original", "") for name in sorted(files)]
            continue
        label = by_key[class_key(class_dir.name)]
        kind, layout = _folder_kind(root, class_dir)
        for name in sorted(files):
            file_kind = kind or ("copy" if UUID_NAME.match(Path(name).stem) else "original")
            found.append(FoundFile((relative / name).as_posix(), label, file_kind, layout))
    if not any(file.label for file in found):
        what = "is empty" if not found else f"has {len(found)} files but no class folder ({', '.join(classes)})"
        raise PipelineError(f"data.archive {root} {what}; looked for layouts {LAYOUTS_LOOKED_FOR}")
    return found, empty


def _class_dir(relative: Path, by_key: dict[str, str]) -> Path | None:
    """The deepest folder of `relative` (itself included) named after a class."""
    for candidate in (relative, *relative.parents):
        if class_key(candidate.name) in by_key:
            return candidate
    return None


def _folder_kind(root: Path, class_dir: Path) -> tuple[str | None, str]:
    """What the folders above a class folder say its files are; None: decide per file name."""
    above = [class_key(part) for part in class_dir.parent.parts]
    if "originaldataset" in above:
        return "original", "v1"
    if "augmentedalzheimerdataset" in above:
        return "copy", "v1"
    split = above[-1] if above else ""
    siblings = {class_key(entry.name) for entry in (root / class_dir.parent).parent.iterdir()} if above else set()
    if split == "val" and "train" in siblings:
        return "original", "v2"
    if split == "train" and "val" in siblings:
        return "copy", "v2"
    if split in {"train", "test"}:
        return "original", "4-class"
    return None, "plain"
