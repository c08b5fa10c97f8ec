"""Account for every file of an MRI archive and trace copies to their sources and subjects."""

import functools
import itertools
import logging
import mmap
import multiprocessing
import os
import signal
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from pipeline.core.errors import PipelineError
from pipeline.core.params import DedupeParams
from pipeline.imaging.reader import InvalidImage, decode_full_and_reduced, is_image_name, not_a_file
from pipeline.mri.fingerprint import KEY_SIZE, VIEW_SIZE, fingerprints, frame_shape, pixel_digest, reduce
from pipeline.mri.forking import frozen_for_fork
from pipeline.mri.layout import FoundFile, count_on_disk, find_files
from pipeline.mri.matching import match_copies, match_copies_per_subject
from pipeline.mri.subjects import fits_a_name_rule, group_subjects
from pipeline.tables.index import IndexRow, account

BATCH = 32  # files a worker reads and fingerprints together
IN_FLIGHT = 2  # batches sent ahead to each worker, so that none waits for its next
REFERENCE_SAMPLE = 256  # originals whose headers fix the frame every scan is reduced to
_INHERITED: tuple = ()  # the scan jobs, and the arrays of keys and views they write into, for forked workers
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scan:
    digest: str = ""
    key: np.ndarray | None = None
    views: np.ndarray | None = None
    reason: str = ""  # why the file is unusable; '' when it is readable


def build_index(root: Path, classes: tuple[str, ...], settings: DedupeParams) -> tuple[list[IndexRow], dict]:
    """One IndexRow per file under `root`, sorted by path, and a report of what was found."""
    found, empty_folders = find_files(root, classes)
    rows: dict[str, IndexRow] = {}
    images = []
    for file in found:
        problem = file.problem or not_a_file(root / file.path)
        if problem:
            rows[file.path] = _rejected(file, problem)
        elif not file.label:
            rows[file.path] = _rejected(file, f"not inside a class folder ({', '.join(classes)})")
        elif not is_image_name(Path(file.path)):
            rows[file.path] = _rejected(file, f"not an image file (suffix {Path(file.path).suffix or 'none'!r})")
        else:
            images.append(file)
    angles = {"original": np.zeros(1), "copy": rotation_angles(settings)}
    originals = [root / file.path for file in images if file.kind == "original"]
    scans = scan_files([(root / file.path, angles[file.kind]) for file in images], originals, settings.workers)
    readable = []
    for file, scan in zip(images, scans):
        if scan.reason:
            rows[file.path] = _rejected(file, scan.reason)
        else:
            readable.append((file, scan))
    kept, set_aside = _pixel_identical(readable)
    rows.update(set_aside)
    with threadpool_limits(1, user_api="blas"):  # its products are small: threads only contend
        placed, report = _place(kept, settings)
    rows.update(placed)
    rows.update(_inherit_from_kept(set_aside, rows))
    index = [rows[path] for path in sorted(rows)]
    report.update(account(index, count_on_disk(root), f"entries on disk in data.archive {root}"),
                  layouts=dict(sorted(Counter(file.layout or "none" for file in found).items())),
                  empty_class_folders=empty_folders)
    return index, report


def rotation_angles(settings: DedupeParams) -> np.ndarray:
    """The rotations (radians) tried when matching a copy, symmetric about zero."""
    steps = int(settings.max_rotation // settings.rotation_step)
    return np.radians(np.arange(-steps, steps + 1) * settings.rotation_step)


def scan_files(files: list[tuple[Path, np.ndarray]], originals: list[Path], workers: int) -> list[Scan]:
    """Decode and fingerprint each (path, rotations) file in the frame of `originals`, in parallel, in order."""
    keys = _shared((len(files), KEY_SIZE))
    views = _shared((len(files), max((len(angles) for _, angles in files), default=1), VIEW_SIZE))
    frame = frame_shape(reference_shape(originals))
    jobs = _batches(files, frame)
    with _mapper(workers, jobs, keys, views) as mapper:  # workers are sent job numbers, not paths
        results = _gather(mapper(_scan_batch, range(len(jobs))), len(files))
    return [
        Scan(reason=reason) if reason else Scan(digest=digest, key=keys[row], views=views[row, : len(angles)])
        for row, ((digest, reason), (_, angles)) in enumerate(zip(results, files))
    ]


def _shared(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of zeros in memory that forked workers write into and this process reads."""
    count = int(np.prod(shape))
    return np.frombuffer(mmap.mmap(-1, max(count, 1) * 4), np.float32, count).reshape(shape)


@contextmanager
def _mapper(workers: int, *inherited):
    """A lazy, ordered map over worker processes (or this one) that read `inherited` and can write into its arrays."""
    global _INHERITED
    _INHERITED = inherited  # forked workers inherit it
    _keep_freed_memory()
    count = workers or os.cpu_count() or 1
    try:
        if count == 1:
            yield map
        else:
            with _forked(count) as links:
                yield functools.partial(_ordered_map, links)
    finally:
        _INHERITED = ()


@contextmanager
def _forked(count: int):
    """`count` forked worker processes, each behind a pipe of its own; all killed on the way out, however it goes.

    No lock is shared (multiprocessing.Pool's queues share one), so a worker dying at any moment
    blocks nothing. Workers ignore SIGINT and SIGTERM: a signal to the process group is this
    process's to handle, and it stops them with SIGKILL.
    """
    context = multiprocessing.get_context("fork")
    links, processes = [], []
    try:
        with frozen_for_fork():
            for _ in range(count):
                link, worker_end = context.Pipe()
                processes.append(context.Process(target=_work, args=(worker_end, [*links, link]), daemon=True))
                processes[-1].start()
                worker_end.close()
                links.append(link)
        yield links
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.join()


def _work(link, stage_ends: list) -> None:
    """A worker's loop: (function, number) in, (number, result, error) out, until the stage process is gone.

    The stage process's ends of the pipes, inherited on fork, are closed first: a worker sees
    the stage process go (killed, even with SIGKILL) as the end of its pipe, and exits.
    """
    for end in stage_ends:
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        while True:
            function, number = link.recv()
            try:
                reply = (number, function(number), None)
            except Exception as error:  # a bug: raised again in the stage process
                reply = (number, None, error)
            link.send(reply)
    except (EOFError, OSError):  # the stage process is gone
        pass


def _ordered_map(links: list, function, numbers: Iterable[int]):
    """`function` over `numbers` on the workers behind `links`, each kept IN_FLIGHT jobs ahead, results in order."""
    numbers = list(numbers)
    upcoming = iter(numbers)
    busy = Counter()
    try:
        for link in links:
            for number in itertools.islice(upcoming, IN_FLIGHT):
                link.send((function, number))
                busy[link] += 1
        done, position = {}, 0
        while position < len(numbers):
            for link in wait([link for link in links if busy[link]]):
                number, result, error = link.recv()
                if error is not None:
                    raise error
                done[number] = result
                busy[link] -= 1
                for following in itertools.islice(upcoming, 1):
                    link.send((function, following))
                    busy[link] += 1
            while position in done:
                yield done.pop(position)
                position += 1
    except (EOFError, ConnectionError):  # its pipe ended, was reset or broke: the worker is gone
        raise PipelineError("a dedupe worker process died (out of memory?); "
                            "rerun with dedupe.workers: 1 to see the file it stopped at") from None


def _keep_freed_memory() -> None:
    """Have this process, and those it forks, reuse freed memory rather than fault in fresh pages.

    glibc hands freed blocks over 128 kB straight back to the system, so each batch's arrays
    would fault in new pages, which costs more than the arithmetic on them; freeing one block
    of 16 MiB raises that threshold to 16 MiB (its dynamic mmap threshold). Elsewhere a no-op.
    """
    np.empty(16 << 20, np.uint8)


def _batches(files: list[tuple[Path, np.ndarray]], frame: tuple[int, int]) -> list[tuple]:
    """(first row, paths, frame, rotations) jobs of up to BATCH consecutive files tried at the same rotations."""
    jobs = []
    for row, (path, angles) in enumerate(files):
        if jobs and jobs[-1][3] is angles and len(jobs[-1][1]) < BATCH:
            jobs[-1][1].append(path)
        else:
            jobs.append((row, [path], frame, angles))
    return jobs


def _gather(batches: Iterable[list], total: int) -> list[tuple[str, str]]:
    results = []
    with tqdm(total=total, desc="dedupe: reading", unit="file") as progress:
        for batch in batches:
            results += batch
            progress.update(len(batch))
    return results


def _scan_batch(number: int) -> list[tuple[str, str]]:
    """(digest, reason) per file of job `number`; the readable files' keys and views go to the shared arrays."""
    jobs, keys, views = _INHERITED
    start, paths, frame, angles = jobs[number]
    results, reduced = [], {}
    for position, path in enumerate(paths):
        try:
            full, scaled = decode_full_and_reduced(path, at_least=frame[::-1])
        except InvalidImage as error:
            results.append(("", str(error)))
            continue
        reduced[position] = reduce(scaled, frame)
        results.append((pixel_digest(np.asarray(full)), ""))
    if reduced:
        prints = fingerprints(np.stack(list(reduced.values())), angles)
        rows = start + np.fromiter(reduced, int, len(reduced))
        keys[rows] = prints.keys
        views[rows, : len(angles)] = prints.views
        for position, blank in zip(reduced, prints.blank):
            if blank:
                results[position] = ("", blank)
    return results


def reference_shape(originals: list[Path]) -> tuple[int, int]:
    """The most common (rows, columns) among up to REFERENCE_SAMPLE originals spread evenly, from their headers."""
    sample = originals[:: -(-len(originals) // REFERENCE_SAMPLE) or 1]
    sizes = Counter(size for size in _header_sizes(sample) if size)
    return sizes.most_common(1)[0][0] if sizes else (1, 1)


def _header_sizes(paths: list[Path]) -> list[tuple[int, int] | None]:
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size[::-1])
        except (OSError, ValueError, Image.DecompressionBombError):
            sizes.append(None)  # the scan pass records why it is unreadable
    return sizes


def _pixel_identical(readable: list[tuple[FoundFile, Scan]]):
    """Keep one file of each group of pixel-identical files; conflicting labels set all aside.

    The file kept is an original before a copy, then one whose name fits a name rule (so that a
    stray `mildDem12 (1).jpg` gives way to `mildDem12.jpg`), then the first by path.
    """
    groups = defaultdict(list)
    for file, scan in readable:
        groups[scan.digest].append((file, scan))  # digests of the full-resolution pixels
    kept, set_aside = [], {}
    for members in groups.values():
        members.sort(key=lambda member: (member[0].kind != "original", not fits_a_name_rule(Path(member[0].path).stem),
                                         member[0].path))
        labels = sorted({file.label for file, _ in members})
        if len(labels) > 1:
            for file, _ in members:
                others = ", ".join(f"{other.path} ({other.label})" for other, _ in members if other.label != file.label)
                set_aside[file.path] = _row(file, "conflict", f"same pixels under another label: {others}")
            continue
        first = members[0][0]
        kept.append(members[0])
        for file, _ in members[1:]:
            set_aside[file.path] = _row(file, "duplicate", f"pixel-identical to {first.path}", source=first.path)
    return kept, set_aside


def _place(kept: list[tuple[FoundFile, Scan]], settings: DedupeParams) -> tuple[dict[str, IndexRow], dict]:
    """Subjects for originals and sources for copies, class by class."""
    rows, rules, scores, margins = {}, {}, [], []
    by_label = defaultdict(list)
    for file, scan in kept:
        by_label[file.label].append((file, scan))
    for label in sorted(by_label):
        originals = [(f, s) for f, s in by_label[label] if f.kind == "original"]
        copies = [(f, s) for f, s in by_label[label] if f.kind == "copy"]
        upright = np.stack([scan.views[0] for _, scan in originals]) if originals else None
        if originals:
            stems = [Path(file.path).stem for file, _ in originals]
            grouping = group_subjects(label, stems, upright, settings.slices_per_subject, settings.separation)
            rules[label] = {"rule": grouping.rule, "note": grouping.note, "subjects": len(set(grouping.subjects))}
            if grouping.rule == "pixels":
                rules[label]["weak_evidence"] = grouping.evidence
            for (file, _), subject in zip(originals, grouping.subjects):
                rows[file.path] = _row(file, "ok", "", source=file.path, subject=subject)
        if not copies:
            continue
        if not originals:
            for file, _ in copies:
                rows[file.path] = _row(file, "orphan", f"no original of class {label} to match")
            continue
        match = match_copies_per_subject if grouping.rule == "pixels" else match_copies
        matches = match(
            np.stack([scan.key for _, scan in copies]),
            [scan.views for _, scan in copies],
            np.stack([scan.key for _, scan in originals]),
            upright[:, None, :],
            np.array(grouping.subjects),
            settings.candidates,
        )
        scores += matches.score.tolist()
        margins += matches.margin.tolist()
        for (file, _), source, score, margin in zip(copies, matches.source, matches.score, matches.margin):
            source_row = rows[originals[source][0].path]
            status, reason = _confidence(score, margin, source_row.path, settings)
            rows[file.path] = _row(
                file, status, reason, source=source_row.path, subject=source_row.subject, score=f"{score:.4f}"
            )
    return rows, {"subject_rules": rules, "copy_scores": _distribution(scores), "copy_margins": _distribution(margins)}


def _confidence(score: float, margin: float, source: str, settings: DedupeParams) -> tuple[str, str]:
    if score < settings.min_score:
        return "orphan", f"best match {source} scores {score:.3f} < dedupe.min_score {settings.min_score}"
    if margin < settings.min_margin:
        return "orphan", f"best subject leads the next by {margin:.3f} < dedupe.min_margin {settings.min_margin}"
    return "ok", ""


def _inherit_from_kept(set_aside: dict[str, IndexRow], rows: dict[str, IndexRow]) -> dict[str, IndexRow]:
    """Duplicates take the source and subject of the file they duplicate."""
    inherited = {}
    for path, row in set_aside.items():
        if row.status == "duplicate":
            kept = rows[row.source]
            inherited[path] = replace(row, source=kept.source, subject=kept.subject, score=kept.score)
    return inherited


def _row(file: FoundFile, status: str, reason: str, **values: str) -> IndexRow:
    return IndexRow(path=file.path, label=file.label, kind=file.kind, status=status, reason=reason, **values)


def _rejected(file: FoundFile, reason: str) -> IndexRow:
    return _row(file, "rejected", reason)


def _distribution(values: list[float]) -> dict:
    if not values:
        return {}
    quantiles = np.quantile(values, [0.0, 0.01, 0.05, 0.5])
    return {name: round(float(value), 4) for name, value in zip(("min", "p01", "p05", "median"), quantiles)}
