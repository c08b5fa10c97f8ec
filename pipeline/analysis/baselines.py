"""Classical models on one backbone's cached features and on the raw pixels, by grouped cross-validation and on test;
and multi-class reductions to binary models (sklearn.multiclass) scored the same way, with their cost.

Models: k-nearest neighbours (k = `baselines.knn.k`, one model per tie rule in `baselines.knn.ties`),
decision trees (Gini, entropy), linear and RBF SVMs and logistic regression; all but the trees on
standardized inputs, with balanced class weights where the model takes them (as the heads do).
Features: view 0 of the cached features (the images as stored). Pixels: the stored images shrunk to
`baselines.pixel_size` a side, gray or RGB as stored, in [0, 1]. Reductions: one-vs-rest, one-vs-one and
error-correcting output codes around each binary base model, on `baselines.reductions.input`.

Cross-validation: StratifiedGroupKFold by subject over train and val (`baselines.folds`, fewer when a class has
fewer subjects: see `fold_count`); a fold fits on its other folds (originals and the copies of their subjects)
and is scored on its own originals, as val and test hold originals only. Test: fitted on train alone, the data
the backbones' heads learn from, and scored once on test.
"""

import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier, OutputCodeClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from pipeline.analysis.knn import TieBreakingKNN
from pipeline.analysis.metrics import prediction_metrics
from pipeline.core.errors import PipelineError
from pipeline.core.params import BaselinesParams, ReductionsParams
from pipeline.tables.features import Pool

LISTED_CLASSES = 12  # a note names up to this many classes, then gives the count


def base_models() -> dict[str, BaseEstimator]:
    """The models that need standardized inputs and take class weights, unfitted and unscaled."""
    return {
        "linear_svm": SVC(kernel="linear", class_weight="balanced"),
        "rbf_svm": SVC(kernel="rbf", class_weight="balanced"),
        "logistic_regression": LogisticRegression(max_iter=1000, class_weight="balanced"),
    }


def build_models(params: BaselinesParams, seed: int) -> dict[str, BaseEstimator]:
    """The baselines by name, unfitted."""
    return {
        **{f"knn_{ties}": make_pipeline(StandardScaler(), TieBreakingKNN(params.knn.k, ties, seed))
           for ties in params.knn.ties},
        **{f"tree_{criterion}": DecisionTreeClassifier(criterion=criterion, class_weight="balanced", random_state=seed)
           for criterion in ("gini", "entropy")},
        **{name: make_pipeline(StandardScaler(), model) for name, model in base_models().items()},
    }


def build_reductions(params: ReductionsParams, seed: int) -> dict[str, Pipeline]:
    """Each reduction around each binary base model, on standardized inputs, named `<strategy>_<base model>`."""
    wrappers = {
        "one_vs_rest": OneVsRestClassifier,
        "one_vs_one": OneVsOneClassifier,
        "output_code": lambda base: OutputCodeClassifier(base, code_size=params.code_size, random_state=seed),
    }
    bases = base_models()
    return {f"{strategy}_{base}": make_pipeline(StandardScaler(), wrappers[strategy](bases[base]))
            for strategy in params.strategies for base in params.base_models}


def run_baselines(features: Pool, pixels: Pool, classes: tuple[str, ...], params: BaselinesParams, seed: int, *,
                  ordinal: bool) -> dict:
    """Each model's mean and std over grouped CV folds on train and val and its scores on test, on the features and
    on the pixels (QWK too when the classes are `ordinal`); each reduction's, with its binary models and fit time.
    `notes` say where the folds or a class fall short (`fold_count`)."""
    if not same_images(features, pixels):
        raise PipelineError(f"the cached {params.backbone} features and data/tfrecords hold other images; "
                            f"rerun dvc repro features@{params.backbone}")
    rows = features.rows
    folds, notes = cv_folds(rows, classes, params.folds, seed)
    train, test = np.flatnonzero(rows["split"] == "train"), np.flatnonzero(rows["split"] == "test")
    reduced = {"pixels": pixels, "features": features}[params.reductions.input]
    scored = {"folds": folds, "train": train, "test": test, "n_classes": len(classes), "ordinal": ordinal}
    with threadpool_limits(1):  # small fits: threads only contend
        return {
            "backbone": params.backbone,
            "folds": len(folds),
            "folds_asked": params.folds,
            "notes": notes,
            "models": {name: score_model(model, features, **scored)
                       for name, model in build_models(params, seed).items()},
            "pixels": {"size": params.pixel_size, "channels": pixels.features.shape[1] // params.pixel_size ** 2,
                       "models": {name: score_model(model, pixels, **scored)
                                  for name, model in build_models(params, seed).items()}},
            "reductions": {"input": params.reductions.input, "code_size": params.reductions.code_size,
                           "models": {name: score_model(model, reduced, **scored, cost=True)
                                      for name, model in build_reductions(params.reductions, seed).items()}},
        }


def same_images(first: Pool, second: Pool) -> bool:
    """Whether two pools hold the same images (path, label, subject) in the same order."""
    columns = ("path", "label", "subject")
    return len(first.rows) == len(second.rows) and all(
        (first.rows[column].to_numpy() == second.rows[column].to_numpy()).all() for column in columns)


def score_model(model: BaseEstimator, pool: Pool, folds: list[tuple[np.ndarray, ...]], train: np.ndarray,
                test: np.ndarray, n_classes: int, *, ordinal: bool, cost: bool = False) -> dict:
    """`cv` (`cross_validate`) and `test` scores of `model` on `pool`; with `cost`, also the seconds its fit on
    train took and its number of binary models (a reduction's `estimators_`)."""
    labels = pool.rows["label"].to_numpy()
    started = time.perf_counter()
    fitted = clone(model).fit(pool.features[train], labels[train])
    seconds = time.perf_counter() - started
    scores = {"cv": cross_validate(model, pool.features, labels, folds, n_classes),
              "test": prediction_metrics(labels[test], fitted.predict(pool.features[test]), n_classes,
                                         ordinal=ordinal)}
    if cost:
        scores.update(binary_models=len(fitted[-1].estimators_), fit_seconds=round(seconds, 3))
    return scores


def cross_validate(model: BaseEstimator, features: np.ndarray, labels: np.ndarray,
                   folds: list[tuple[np.ndarray, ...]], n_classes: int) -> dict[str, float]:
    """Mean and std over folds of the held-out balanced accuracy, and the mean macro-F1."""
    scores = [fit_score(model, features, labels, fit, held_out, n_classes, ordinal=False) for fit, held_out in folds]
    balanced = np.array([fold["balanced_accuracy"] for fold in scores])
    return {"balanced_accuracy": float(balanced.mean()), "balanced_accuracy_std": float(balanced.std()),
            "macro_f1": float(np.mean([fold["macro_f1"] for fold in scores]))}


def fit_score(model: BaseEstimator, features: np.ndarray, labels: np.ndarray, fit: np.ndarray, score: np.ndarray,
              n_classes: int, *, ordinal: bool) -> dict[str, float | None]:
    """A fresh copy of `model` fitted on the `fit` rows and scored on the `score` rows (QWK too when `ordinal`)."""
    predicted = clone(model).fit(features[fit], labels[fit]).predict(features[score])
    return prediction_metrics(labels[score], predicted, n_classes, ordinal=ordinal)


def cv_folds(rows, classes: tuple[str, ...], asked: int, seed: int) -> tuple[list[tuple[np.ndarray, ...]], list[str]]:
    """(fit, held-out) row numbers of the grouped folds over train and val, held-out rows originals only, and the
    notes of `fold_count`."""
    labels, subjects = rows["label"].to_numpy(), rows["subject"].to_numpy()
    development = np.flatnonzero(rows["split"] != "test")
    n_folds, notes = fold_count(labels[development], subjects[development], classes, asked)
    folds = [(development[fit], development[held_out]) for fit, held_out in
             grouped_folds(labels[development], subjects[development], n_folds, seed)]
    original = rows["kind"].to_numpy() == "original"
    return [(fit, held_out[original[held_out]]) for fit, held_out in folds], notes


def fold_count(labels: np.ndarray, subjects: np.ndarray, classes: tuple[str, ...], asked: int) -> tuple[int, list[str]]:
    """The folds to use, `asked` or fewer, and notes for the log and the report.

    A class with fewer subjects than folds cannot be held out in every fold: the folds drop to the fewest subjects
    of any class that has two or more. A class with one (or none) cannot be both learnt and scored in any fold at
    all: it is named, and cross-validation stops only when no class has two.
    """
    counts = {name: len(np.unique(subjects[labels == code])) for code, name in enumerate(classes)}
    usable = {name: count for name, count in counts.items() if count >= 2}
    if not usable:
        raise PipelineError("baselines: no class has two subjects in train and val, so grouped cross-validation "
                            "cannot hold one out and still learn its class; give the classes more subjects (or, "
                            "for a source's own splits, set split.source_splits: false to re-split by group)")
    n_folds = min(asked, min(usable.values()))
    notes = []
    if n_folds < asked:
        short = [name for name, count in usable.items() if count < asked]
        notes.append(f"baselines.folds = {asked}, but {listed(short)} {'has' if len(short) == 1 else 'have'} as few "
                     f"as {n_folds} subjects in train and val: cross-validated with {n_folds} folds (set "
                     f"baselines.folds: {n_folds} to ask for that, or give the class more subjects)")
    lone = [name for name, count in counts.items() if count < 2]
    if lone:
        notes.append(f"{listed(lone)}: fewer than two subjects in train and val, so no fold both learns and scores "
                     "the class; in cross-validation it is never predicted right")
    return n_folds, notes


def listed(names: list[str]) -> str:
    """'class a' or 'classes a, b, c', naming at most LISTED_CLASSES and counting the rest."""
    shown = ", ".join(names[:LISTED_CLASSES]) + (f" and {len(names) - LISTED_CLASSES} more"
                                                   if len(names) > LISTED_CLASSES else "")
    return f"class {shown}" if len(names) == 1 else f"classes {shown}"


def grouped_folds(labels: np.ndarray, subjects: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """(fit, held-out) row numbers of StratifiedGroupKFold by subject, checked to keep each subject on one side."""
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rows, not subjects; `fold_count` notes the classes that fall short
        warnings.filterwarnings("ignore", "The least populated class in y has only")
        folds = list(splitter.split(labels, labels, groups=subjects))
    check_folds(folds, subjects)
    return folds


def check_folds(folds: list[tuple[np.ndarray, ...]], subjects: np.ndarray) -> None:
    """Stop when a subject has rows on both sides of a fold."""
    for number, (fit, held_out) in enumerate(folds):
        shared = np.intersect1d(subjects[fit], subjects[held_out])
        if len(shared):
            raise PipelineError(f"cross-validation fold {number}: subject {shared[0]} is on both sides")
