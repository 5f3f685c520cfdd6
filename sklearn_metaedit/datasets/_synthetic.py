"""Synthetic classification data with a controllable group bias."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_biased_classification"]


def _is_integer(value) -> bool:
    # True is an Integral too, but a count of True is a mistake, not a request for 1
    return isinstance(value, Integral) and not isinstance(value, bool)


def make_biased_classification(
    n_samples: int = 1000,
    n_features: int = 10,
    n_groups: int = 2,
    bias: float = 0.5,
    random_state=None,
):
    """Generate a binary classification problem whose positive rate differs by group.

    Each row belongs to one of ``n_groups`` groups (group ``g`` is drawn with probability
    proportional to ``n_groups - g``, so groups differ in size). Features are standard
    normal; the first feature is shifted by ``bias * g / (n_groups - 1)`` so that it acts
    as a proxy of the group. The label is ``1`` when a noisy linear score of the
    features, plus the same group shift, is positive: with ``bias > 0`` later groups have
    higher positive rates, and a model that never sees the group still learns the gap.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=10
        At least 2.
    n_groups : int, default=2
        At least 2.
    bias : float, default=0.5
        Size of the group effect; 0 makes the groups statistically identical.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64
    sensitive_features : ndarray of shape (n_samples,), int64
        The group of each row, ``0 .. n_groups - 1``.

    Examples
    --------
    >>> from sklearn_metaedit.datasets import make_biased_classification
    >>> X, y, groups = make_biased_classification(500, bias=1.0, random_state=0)
    >>> bool(y[groups == 1].mean() > y[groups == 0].mean())
    True
    """
    if not _is_integer(n_samples) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    if not _is_integer(n_features) or n_features < 2:
        raise ValueError(f"n_features must be an integer of at least 2, got {n_features!r}.")
    if not _is_integer(n_groups) or n_groups < 2:
        raise ValueError(f"n_groups must be an integer of at least 2, got {n_groups!r}.")
    if isinstance(bias, bool) or not isinstance(bias, Real) or not np.isfinite(bias):
        raise ValueError(f"bias must be a finite number, got {bias!r}.")
    n_samples, n_features, n_groups = int(n_samples), int(n_features), int(n_groups)
    rng = check_random_state(random_state)
    weights = np.arange(n_groups, 0, -1, dtype=float)
    groups = rng.choice(n_groups, size=n_samples, p=weights / weights.sum())
    shift = bias * groups / (n_groups - 1)
    X = rng.standard_normal((n_samples, n_features))
    X[:, 0] += shift
    coef = rng.standard_normal(n_features) / np.sqrt(n_features)
    score = X @ coef + shift + 0.5 * rng.standard_normal(n_samples)
    y = (score > np.median(score)).astype(np.int64)
    return X.astype(np.float32), y, groups.astype(np.int64)
