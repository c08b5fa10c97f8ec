"""A folder of class subfolders, with an optional CSV (`path`, `group`) naming each file's group."""

import csv
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.imaging.reader import is_image_name, not_a_file
from pipeline.mri.fingerprint import upright_views
from pipeline.mri.layout import count_on_disk, find_files
from pipeline.mri.subjects import subjects_from_pixels
from pipeline.sources.pixels import group_identical, read_pixels, set_aside_unreadable
from pipeline.tables.index import IndexRow, account
from pipeline.tables.source import SourceInfo

GROUP_COLUMNS = ("path", "group")
PIXELS = "pixels"  # data.groups: MRI slices grouped into subjects by their pixels (`subjects_from_pixels`)


def class_folders(root: Path) -> tuple[str, ...]:
    """The names of the folders right under `root`, sorted: the classes when data.classes names none."""
    if not root.is_dir():
        raise PipelineError(f"data.archive {root}: no such folder (the folder source reads class subfolders there)")
    names = tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")))
    if len(names) < 2:
        raise PipelineError(f"data.archive {root}: {len(names)} class folder(s); the folder source needs at least two")
    return names


def read_groups(path: Path) -> dict[str, str]:
    """The group CSV as {path: group}; a missing column, an empty value or a path listed twice stops with its line."""
    if not path.is_file():
        raise PipelineError(f"data.groups {path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in GROUP_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"data.groups {path}: missing column(s) {', '.join(missing)}; it needs path, group")
        groups: dict[str, str] = {}
        for line, record in enumerate(reader, start=2):
            file, group = (record["path"] or "").strip().replace("\\", "/"), (record["group"] or "").strip()
            if not file or not group:
                raise PipelineError(f"data.groups {path}, line {line}: empty path or group")
            if file in groups and groups[file] != group:
                raise PipelineError(f"data.groups {path}, line {line}: {file} is listed twice, in groups "
                                    f"{groups[file]!r} and {group!r}")
            groups[file] = group
    return groups


def slice_subjects(root: Path, paths: list[str], labels: list[str], slices_per_subject: int,
                   separation: float) -> dict[str, str]:
    """{path: subject} for MRI slices with no group file: chains of neighbouring slices (`subjects_from_pixels`)."""
    if not paths:
        return {}
    views = upright_views(root, paths)
    return dict(zip(paths, subjects_from_pixels(paths, labels, views, slices_per_subject, separation)[0]))


def index_folder(root: Path, classes: tuple[str, ...], groups_file: Path | None,
                 slices_per_subject: int, separation: float) -> tuple[list[IndexRow], dict, SourceInfo]:
    """One row per file under `root`: usable images grouped by the CSV, by their pixels (MRI slices, `data.groups:
    pixels`) or each on its own; identical images together."""
    classes = classes or class_folders(root)
    found, empty_folders = find_files(root, classes)
    by_pixels = groups_file == Path(PIXELS)
    if by_pixels:
        groups_file = None
    groups = read_groups(groups_file) if groups_file else None
    csv_path = groups_file and _inside(groups_file, root)  # the CSV is no image: reported, not indexed
    rows, candidates = [], []
    for file in found:
        if file.path == csv_path:
            continue
        problem = file.problem or not_a_file(root / file.path)
        if not problem and not file.label:
            problem = f"not inside a class folder ({', '.join(classes)})"
        if not problem and not is_image_name(Path(file.path)):
            problem = f"not an image file (suffix {Path(file.path).suffix or 'none'!r})"
        if not problem and groups is not None and file.path not in groups:
            problem = f"not listed in data.groups {groups_file}"
        row = IndexRow(path=file.path, label=file.label, kind="original", source=file.path,
                       subject=groups[file.path] if groups and file.path in groups else file.path)
        rows.append(IndexRow(path=file.path, label=file.label, kind="original", status="rejected", reason=problem)
                    if problem else row)
        if not problem:
            candidates.append(file.path)
    pixels = dict(zip(candidates, read_pixels(root, candidates)))
    rows = set_aside_unreadable(rows, pixels)
    if by_pixels:
        usable = [row for row in rows if row.status == "ok"]
        subjects = slice_subjects(root, [row.path for row in usable], [row.label for row in usable],
                                  slices_per_subject, separation)
        rows = [IndexRow(**{**row.__dict__, "subject": subjects[row.path]}) if row.path in subjects else row
                for row in rows]
    rows, identical = group_identical(rows, pixels)
    usable = [row for row in rows if row.status == "ok"]
    counted = f"entries on disk in data.archive {root}" + (f" besides {csv_path}" if csv_path else "")
    report = {
        **account(rows, count_on_disk(root) - bool(csv_path), counted),  # the group CSV is no image: it has no row
        "identical": identical,
        "empty_class_folders": empty_folders,
        "groups": {"file": csv_path, **_group_report(groups, usable, {file.path for file in found})}
        if groups is not None else None,
    }
    colour = any(pixels[row.path].colour for row in usable)
    info = SourceInfo(source="folder", root=root.as_posix(), classes=classes, channels=3 if colour else 1,
                      own_splits=False)
    return sorted(rows, key=lambda row: row.path), report, info


def _inside(groups_file: Path, root: Path) -> str:
    """The group CSV's path inside the folder; outside it, DVC would not see it change, so it is refused."""
    path, folder = groups_file.resolve(), root.resolve()
    if not path.is_relative_to(folder):
        raise PipelineError(f"data.groups {groups_file} is outside data.archive {root}: move it into that folder, "
                            "which dedupe depends on, so that a changed CSV reruns dedupe")
    return path.relative_to(folder).as_posix()


def _group_report(groups: dict[str, str], usable: list[IndexRow], found: set[str]) -> dict:
    """What the group CSV said that the files do not bear out: listed but missing files, groups over two classes."""
    missing = sorted(set(groups) - found)
    labels: dict[str, set[str]] = {}
    for row in usable:
        labels.setdefault(groups[row.path], set()).add(row.label)
    mixed = sorted(group for group, names in labels.items() if len(names) > 1)
    return {"listed": len(groups), "listed_but_missing": len(missing), "missing_examples": missing[:10],
            "groups": len(labels), "groups_in_two_or_more_classes": len(mixed), "mixed_examples": mixed[:10]}
