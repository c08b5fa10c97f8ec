"""The index every source yields, one row per file found: its columns, reading and writing."""

import csv
from collections import Counter, defaultdict
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import pandas as pd

from pipeline.core.errors import PipelineError, require_file
from pipeline.core.files import replacing
from pipeline.core.text import escape, unescape


@dataclass(frozen=True)
class IndexRow:
    path: str
    label: str
    kind: str
    source: str = ""
    subject: str = ""
    score: str = ""
    status: str = "ok"
    reason: str = ""
    source_split: str = ""  # the source's own split (train, val or test) where it ships them; else empty


INDEX_COLUMNS = tuple(field.name for field in fields(IndexRow))
ROW_COLUMNS = INDEX_COLUMNS[:-1]  # what splits.csv keeps of an index row, before its own `split`


def write_index(path: Path, rows: list[IndexRow]) -> None:
    """Write the index CSV atomically, in the given row order, every value as `pipeline.core.text` CSV text."""
    with replacing(path) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        writer.writerows([escape(value) for value in astuple(row)] for row in rows)


def read_index(path: Path) -> pd.DataFrame:
    """Read the dedupe stage's index as text, so every value is written back unchanged (file names as on disk).

    Python strings, not pandas' pyarrow-backed ones (its default once pyarrow is installed, as TFDS brings it):
    a file name that is not UTF-8 unescapes to surrogates, which pyarrow cannot hold.
    """
    require_file(path, "dedupe")
    text = pd.read_csv(path, dtype=object, keep_default_na=False, encoding="utf-8")
    index = pd.DataFrame({column: pd.Series([unescape(value) for value in text[column]], dtype=object)
                          for column in text.columns})
    missing = [column for column in INDEX_COLUMNS if column not in index.columns]
    if missing:
        raise PipelineError(f"{path}: missing columns {', '.join(missing)}; run `dvc repro dedupe` again")
    return index


def account(rows: list[IndexRow], found: int, counted: str) -> dict:
    """What became of every file or example a source found, for metrics/dedupe.json: found, used and set aside,
    rows per status and kind, and subjects per class (used originals). `found` is counted apart from the rows
    (a walk of the folder, the dataset's declared sizes), as `counted` says; a row too many or too few stops here."""
    if found != len(rows):
        raise PipelineError(f"{found} {counted} but {len(rows)} rows indexed; did the files change while the stage ran? "
                            "Rerun `dvc repro dedupe`")
    status, subjects = defaultdict(Counter), defaultdict(set)
    for row in rows:
        status[row.status][row.kind] += 1
        if row.status == "ok" and row.kind == "original":
            subjects[row.label].add(row.subject)
    used = sum(status["ok"].values())
    return {
        "files": {"found": found, "used": used, "set_aside": found - used},
        "status": {name: dict(sorted(kinds.items())) for name, kinds in sorted(status.items())},
        "subjects": {label: len(values) for label, values in sorted(subjects.items())},
    }
