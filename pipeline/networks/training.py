"""What the two training stages share: class weights, early stopping and dvclive logging."""

import logging
from pathlib import Path

import keras
import numpy as np
from dvclive.keras import DVCLiveCallback
from scmrepo.exceptions import SCMError
from sklearn.utils.class_weight import compute_class_weight

from dvclive import Live
from pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    """'balanced' weights n / (k * count) per class present (1 for absent classes), or None for 'none'."""
    if mode == "none":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    by_class = dict(zip(present.tolist(), weights.tolist()))
    return {index: by_class.get(index, 1.0) for index in range(n_classes)}


def training_callbacks(patience: int, has_val: bool, live: Live) -> list[keras.callbacks.Callback]:
    """Early stopping on val_loss (loss without a val split), restoring the best weights, and dvclive logging."""
    monitor = "val_loss" if has_val else "loss"
    if not has_val:
        log.warning("the val split is empty: early stopping watches the training loss instead")
    return [keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
            DVCLiveCallback(live=live)]


def open_live(live_dir: Path) -> Live:
    """A dvclive logger writing under live_dir, with no dvc.yaml of its own and no experiment saved."""
    try:
        return Live(str(live_dir), dvcyaml=None, save_dvc_exp=False)
    except SCMError as error:
        raise PipelineError(f"dvclive needs a git repository with at least one commit ({error}); "
                            "commit once (git add -A && git commit) and run again") from None
