"""`python -m pipeline predict scan.jpg ... [--explain DIR]`: each trained backbone's class probabilities for some
scans, and with --explain each one's Grad-CAM overlay under DIR/<backbone>/<scan name>.png."""

from pathlib import Path

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.explain.scans import explain_scans, write_overlays
from pipeline.imaging.tfrecords import read_meta
from pipeline.networks.inference import predict_scans


def main(params: Params, *scans: str, explain: Path | None = None) -> None:
    """Print one row per scan and backbone; a scan that cannot be read gets one row with the reason. With `explain`,
    write each model's overlay of each readable scan under it."""
    models = {backbone: paths.model_files(backbone).model for backbone in params.backbones}
    meta = read_meta(paths.TFRECORDS)  # what the models were trained on: the source's classes and channels
    table = predict_scans([Path(scan) for scan in scans], models, meta.classes, meta.channels)
    if not table["error"].any():
        table = table.drop(columns="error")
    print(table.to_string(index=False, na_rep="", float_format=lambda value: f"{value:.3f}"))
    if explain is not None:
        written = write_overlays(explain_scans([Path(scan) for scan in scans], models, meta.channels),
                                 meta.classes, explain)
        print(f"wrote {len(written)} Grad-CAM overlays under {explain}")
