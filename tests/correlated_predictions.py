"""Two models' predictions on a simulated test split whose errors are correlated within each subject.

Each subject has a class and slices; a model gets a slice right with a probability set per subject and model:
logistic(skill + gap + shared difficulty of the subject + the model's own luck on that subject). Slices of one
subject thus succeed or fail together, as slices of one brain do, and with `gap = 0` neither model is better.
"""

import numpy as np
from scipy.integrate import quad
from scipy.special import expit
from scipy.stats import norm


def correlated_predictions(rng: np.random.Generator, *, subjects_per_class: int = 8, classes: int = 3,
                           slices: int = 32, gap: float = 0.0, skill: float = 0.5, shared: float = 1.0,
                           own: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, subjects, and models a's and b's predicted classes; a's log-odds of a right slice exceed b's by `gap`."""
    n_subjects = subjects_per_class * classes
    subject_class = np.repeat(np.arange(classes), subjects_per_class)
    difficulty = rng.normal(0, shared, n_subjects)
    labels = np.repeat(subject_class, slices)
    subjects = np.repeat(np.arange(n_subjects), slices)

    def predict(model_gap: float) -> np.ndarray:
        chance_right = expit(skill + model_gap + difficulty + rng.normal(0, own, n_subjects))[subjects]
        wrong = (labels + rng.integers(1, classes, len(labels))) % classes
        return np.where(rng.random(len(labels)) < chance_right, labels, wrong)

    return labels, subjects.astype(str), predict(gap), predict(0.0)


def true_balanced_accuracy(skill: float = 0.5, shared: float = 1.0, own: float = 1.5) -> float:
    """The balanced accuracy of a model with no gap over every subject there could be: the mean chance of a right
    slice, logistic(skill + a normal of the subject's and the model's spreads together)."""
    spread = np.hypot(shared, own)
    return quad(lambda z: expit(skill + spread * z) * norm.pdf(z), -12, 12)[0]
