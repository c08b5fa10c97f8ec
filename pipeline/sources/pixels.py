"""Reading a source's images once: what each file is, and which ones are pixel-identical."""

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from pipeline.imaging.reader import InvalidImage, has_colour, read_image
from pipeline.mri.fingerprint import pixel_digest
from pipeline.tables.index import IndexRow

READERS = 2  # threads decoding images (Pillow releases the GIL while it decodes)


@dataclass(frozen=True)
class Pixels:
    digest: str = ""  # of the decoded RGB pixels and their shape; '' when unreadable
    colour: bool = False
    reason: str = ""  # why the file is no usable image


def read_pixels(root: Path, paths: list[str]) -> list[Pixels]:
    """Decode every file under `root` with the project's reader, in order."""
    with ThreadPoolExecutor(READERS) as pool:
        return list(tqdm(pool.map(lambda path: _read(root / path), paths), total=len(paths), desc="read images",
                         unit="image"))


def _read(path: Path) -> Pixels:
    try:
        pixels = read_image(path, channels=3)
    except InvalidImage as error:
        return Pixels(reason=str(error))
    return Pixels(digest=pixel_digest(pixels), colour=has_colour(pixels))


def set_aside_unreadable(rows: list[IndexRow], pixels: dict[str, Pixels]) -> list[IndexRow]:
    """The rows whose file the reader refused, `rejected` with its reason (and no source or subject)."""
    return [replace(row, status="rejected", reason=pixels[row.path].reason, source="", subject="")
            if row.path in pixels and pixels[row.path].reason else row for row in rows]


def group_identical(rows: list[IndexRow], pixels: dict[str, Pixels]) -> tuple[list[IndexRow], dict]:
    """Merge the groups (subjects) of pixel-identical images; identical images under two labels are conflicts.

    A group joined to another through identical pixels takes the first group name in sorted order, so that
    no split can put one image's twin on the other side. Returns the rows and what was merged.
    """
    parent = {row.subject: row.subject for row in rows if row.status == "ok"}

    def find(group: str) -> str:
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    by_digest = defaultdict(list)
    for row in rows:
        if row.status == "ok":
            by_digest[pixels[row.path].digest].append(row)
    twins = [members for members in by_digest.values() if len(members) > 1]
    conflicts = {row.path for members in twins if len({row.label for row in members}) > 1 for row in members}
    for members in twins:
        for row in members[1:]:
            first, other = sorted((find(members[0].subject), find(row.subject)))
            parent[other] = first
    merged = [replace(row, subject=find(row.subject)) if row.status == "ok" else row for row in rows]
    merged = [replace(row, status="conflict", reason="the same pixels as an image of another class")
              if row.path in conflicts else row for row in merged]
    report = {
        "identical_sets": len(twins),
        "identical_images": sum(len(members) for members in twins),
        "groups_merged": sum(row.subject != original.subject for row, original in zip(merged, rows)),
        "conflicts": len(conflicts),
    }
    return merged, report
