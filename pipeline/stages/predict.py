"""`python -m pipeline predict scan.jpg ...`: each trained backbone's class probabilities for some scans."""

from pathlib import Path

from pipeline.core import paths
from pipeline.core.params import Params
from pipeline.networks.inference import predict_scans


def main(params: Params, *scans: str) -> None:
    """Print one row per scan and backbone; a scan that cannot be read gets one row with the reason."""
    models = {backbone: paths.model_files(backbone).model for backbone in params.backbones}
    table = predict_scans([Path(scan) for scan in scans], models, params.data.classes)
    if not table["error"].any():
        table = table.drop(columns="error")
    print(table.to_string(index=False, na_rep="", float_format=lambda value: f"{value:.3f}"))
