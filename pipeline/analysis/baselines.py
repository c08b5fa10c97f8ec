"""Classical models on one backbone's cached features, by grouped cross-validation and on test.

Models: k-nearest neighbours (k = `baselines.knn.k`, one model per tie rule in `baselines.knn.ties`),
decision trees (Gini, entropy), linear and RBF SVMs and logistic regression; all but the trees on
standardized features, with balanced class weights where the model takes them (as the heads do).
All read view 0 of the cached features (the images as stored).

Cross-validation: StratifiedGroupKFold by subject over train and val (`baselines.folds`); a fold
fits on its other folds (originals and the copies of their subjects) and is scored on its own
originals, as val and test hold originals only. Test: fitted on train alone, the data the
backbones' heads learn from, and scored once on test.
"""


import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from pipeline.analysis.knn import TieBreakingKNN
from pipeline.analysis.metrics import prediction_metrics
from pipeline.core.errors import PipelineError
from pipeline.core.params import BaselinesParams
from pipeline.tables.features import Pool


def build_models(params: BaselinesParams, seed: int) -> dict[str, BaseEstimator]:
    """The baselines by name, unfitted."""
    def scaled(model: BaseEstimator) -> BaseEstimator:
        return make_pipeline(StandardScaler(), model)

    return {
        **{f"knn_{ties}": scaled(TieBreakingKNN(params.knn.k, ties, seed)) for ties in params.knn.ties},
        **{f"tree_{criterion}": DecisionTreeClassifier(criterion=criterion, class_weight="balanced", random_state=seed)
           for criterion in ("gini", "entropy")},
        "linear_svm": scaled(SVC(kernel="linear", class_weight="balanced")),
        "rbf_svm": scaled(SVC(kernel="rbf", class_weight="balanced")),
        "logistic_regression": scaled(LogisticRegression(max_iter=1000, class_weight="balanced")),
    }


def run_baselines(pool: Pool, n_classes: int, params: BaselinesParams, seed: int, *, ordinal: bool) -> dict:
    """Each model's mean and std over grouped CV folds on train and val, and its scores on test (QWK too when
    the classes are `ordinal`)."""
    rows, features = pool.rows, pool.features
    labels, subjects = rows["label"].to_numpy(), rows["subject"].to_numpy()
    development = np.flatnonzero(rows["split"] != "test")
    train, test = np.flatnonzero(rows["split"] == "train"), np.flatnonzero(rows["split"] == "test")
    folds = [(development[fit], development[held_out]) for fit, held_out in
             grouped_folds(labels[development], subjects[development], params.folds, seed)]
    folds = [(fit, held_out[rows["kind"].to_numpy()[held_out] == "original"]) for fit, held_out in folds]
    models = {}
    with threadpool_limits(1):  # small fits: threads only contend
        for name, model in build_models(params, seed).items():
            models[name] = {
                "cv": cross_validate(model, features, labels, folds, n_classes),
                "test": fit_score(model, features, labels, train, test, n_classes, ordinal=ordinal),
            }
    return {"backbone": params.backbone, "folds": params.folds, "models": models}


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


def grouped_folds(labels: np.ndarray, subjects: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """(fit, held-out) row numbers of StratifiedGroupKFold by subject, checked to keep each subject on one side."""
    n_subjects = len(np.unique(subjects))
    if n_folds > n_subjects:
        raise PipelineError(f"baselines.folds = {n_folds} is more than the {n_subjects} subjects of train and val")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = list(splitter.split(labels, labels, groups=subjects))
    check_folds(folds, subjects)
    return folds


def check_folds(folds: list[tuple[np.ndarray, ...]], subjects: np.ndarray) -> None:
    """Stop when a subject has rows on both sides of a fold."""
    for number, (fit, held_out) in enumerate(folds):
        shared = np.intersect1d(subjects[fit], subjects[held_out])
        if len(shared):
            raise PipelineError(f"cross-validation fold {number}: subject {shared[0]} is on both sides")
