"""Where a map's mass lies: the share of it inside the brain's silhouette, against the brain's share of the image."""

import numpy as np
from PIL import Image

from pipeline.mri.fingerprint import frame_shape, reduce, silhouettes


def brain_masks(images: np.ndarray) -> np.ndarray:
    """The brain's silhouette (boolean, n x side x side) in gray or RGB scans (n, side, side[, 3]) in [0, 255], as
    dedupe finds it: on the scans reduced to its working frame, then stretched back to their side."""
    gray = images if images.ndim == 3 else images.mean(axis=-1)
    side = gray.shape[1:]
    frame = frame_shape(side)
    reduced = np.stack([reduce(Image.fromarray(np.clip(scan, 0, 255).astype(np.uint8)), frame) for scan in gray])
    return np.stack([np.asarray(Image.fromarray(mask).resize(side[::-1], Image.Resampling.NEAREST))
                     for mask in silhouettes(reduced)])


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map, the share of its mass (its values summed) inside the mask; NaN for a map with no mass."""
    totals = maps.sum(axis=(1, 2), dtype=np.float64)
    inside = (maps * masks).sum(axis=(1, 2), dtype=np.float64)
    return np.divide(inside, totals, out=np.full(len(maps), np.nan), where=totals > 0)


def attention_summary(maps: np.ndarray, masks: np.ndarray) -> dict:
    """The mean share of the maps' mass inside the brain and the brain's mean share of the image, over the scans
    (maps with no mass left out of the first), rounded so that a rerun writes the same bytes."""
    shares = mass_inside(maps, masks)
    weighed = shares[~np.isnan(shares)]
    return {"attention_inside_brain": round(float(weighed.mean()), 4) if len(weighed) else None,
            "brain_share_of_image": round(float(masks.mean()), 4),
            "maps_without_mass": int(np.isnan(shares).sum())}
