"""The one place that picks a source by `data.source` and imports only what that source needs."""

from pathlib import Path

from pipeline.core.params import Params
from pipeline.tables.index import IndexRow
from pipeline.tables.source import SourceInfo


def index_source(params: Params, images_dir: Path) -> tuple[list[IndexRow], dict, SourceInfo]:
    """The index rows, a report and the SourceInfo of `data.source` (a TFDS source writes its files to images_dir)."""
    data = params.data
    if data.source.startswith("tfds:"):
        from pipeline.sources.tfds import index_tfds
        return index_tfds(data.source, data.tfds_dir, data.classes, images_dir)
    if data.source == "folder":
        from pipeline.sources.folder import index_folder
        return index_folder(Path(data.archive), data.classes, Path(data.groups) if data.groups else None,
                            params.dedupe.slices_per_subject, params.dedupe.separation)
    from pipeline.mri.dedupe import build_index
    rows, report = build_index(Path(data.archive), data.classes, params.dedupe)
    return rows, report, SourceInfo(source="archive", root=data.archive, classes=data.classes, channels=1,
                                    own_splits=False)
