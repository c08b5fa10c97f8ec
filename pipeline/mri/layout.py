"""Find every file of an archive and what the archive's layout says it is."""

import errno
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
    problem: str = ""  # why the walk could not use it (a folder it cannot list, a link to a folder walked already)


def archive_folders(layout: str) -> tuple[Path, Path]:
    """The originals' and copies' folders of a layout the synth stage writes."""
    if layout == "v1":
        return Path("OriginalDataset"), Path("AugmentedAlzheimerDataset")
    return Path("data/val"), Path("data/train")


def find_files(root: Path, classes: tuple[str, ...]) -> tuple[list[FoundFile], list[str]]:
    """Every file under `root` with its class and kind, and the class folders that hold no file.

    Symlinked folders are followed, each real folder once: a link to a folder already walked,
    and a folder that cannot be listed, are found as one entry with a `problem`.
    """
    if not root.is_dir():
        raise PipelineError(f"data.archive {root}: no such folder; looked for layouts {LAYOUTS_LOOKED_FOR}")
    by_key = {class_key(name): name for name in classes}
    found, empty = [], []
    for relative, subfolders, files, problems in _walk(root):
        class_dir = _class_dir(relative, by_key)
        if class_dir is not None and relative == class_dir and not files and not subfolders and not problems:
            empty.append(relative.as_posix())
        if class_dir is None:
            found += [FoundFile((relative / name).as_posix(), "", "original", "", problems.get(name, ""))
                      for name in sorted(files)]
            continue
        label = by_key[class_key(class_dir.name)]
        kind, layout = _folder_kind(root, class_dir)
        for name in sorted(files):
            file_kind = kind or ("copy" if UUID_NAME.match(Path(name).stem) else "original")
            found.append(FoundFile((relative / name).as_posix(), label, file_kind, layout, problems.get(name, "")))
    if not any(file.label for file in found):
        what = "is empty" if not found else f"has {len(found)} files but no class folder ({', '.join(classes)})"
        raise PipelineError(f"data.archive {root} {what}; looked for layouts {LAYOUTS_LOOKED_FOR}")
    return found, empty


def _walk(root: Path):
    """(folder relative to root, subfolder names, file names, {name: problem}) top-down, like os.walk.

    The folders of a listing are claimed (by device and inode) before any is entered, so a real
    folder is walked under its own name rather than under a link to it found deeper.
    """
    seen = {_identity(root): Path()}
    pending = [Path()]
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(root / relative) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            if relative == Path():
                raise PipelineError(f"data.archive {root}: {_unlistable(error)}") from None
            yield relative.parent, [], [relative.name], {relative.name: _unlistable(error)}
            continue
        subfolders, files, problems = [], [], {}
        for entry in entries:
            if not _is_folder(entry):
                files.append(entry.name)
                continue
            identity = _identity(Path(entry.path))
            if identity in seen:
                files.append(entry.name)
                problems[entry.name] = f"a link to folder {seen[identity].as_posix() or '.'}, walked there once"
            else:
                seen[identity] = relative / entry.name
                subfolders.append(entry.name)
        yield relative, subfolders, files, problems
        pending += [relative / name for name in reversed(subfolders)]


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _unlistable(error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return "a folder this user cannot list: permission denied (check its permissions); its files are not indexed"
    return f"a folder that cannot be listed ({error.strerror}); its files are not indexed"


def count_on_disk(root: Path) -> int:
    """The entries under `root` the index must hold a row for, counted by a walk of its own.

    Each file (or pipe, socket, device, broken link) counts once, and so does each folder that
    cannot be listed and each link to a folder counted already.
    """
    count, seen = 0, {_identity(root)}

    def unlistable(error: OSError) -> None:
        nonlocal count
        count += 1

    for folder, subfolders, files in os.walk(root, onerror=unlistable, followlinks=True):
        count += len(files)
        for name in list(subfolders):
            identity = _identity(Path(folder, name))
            if identity in seen:
                subfolders.remove(name)
                count += 1
            seen.add(identity)
    return count


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
