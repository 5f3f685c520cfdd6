"""Parity metrics for K >= 2 groups, and scorers that give ``predict`` the groups.

The gaps here are the quantities fairlearn reports (``demographic_parity_difference``,
``equal_opportunity_difference``, ``equalized_odds_difference`` with
``method="between_groups"``): the largest group rate minus the smallest.

scikit-learn's scorers call ``estimator.predict(X)`` without metadata, so a model that
needs the sensitive features at prediction time cannot be scored by them inside
``GridSearchCV`` (it scores NaN). The scorers made by :func:`make_fair_scorer` pass
``sensitive_features`` both to ``predict`` and to the metric. They find the groups in
either of two ways:

- routed metadata: with ``sklearn.set_config(enable_metadata_routing=True)``, pass
  ``sensitive_features=...`` to ``GridSearchCV.fit`` / ``cross_validate(params=...)``;
  the scorers request it by default;
- un-routed: when the estimator (or the last step of a Pipeline) has a
  ``sensitive_feature`` parameter that names a column of its input, the scorer reads
  the groups from ``X`` itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.utils.metadata_routing import MetadataRequest

from ._constraint_names import CONSTRAINTS
from ._groups import (
    check_sensitive_features,
    encode_groups,
    fit_groups,
    resolve_sensitive_features,
)

__all__ = [
    "equalized_odds_gap",
    "fair_accuracy_scorer",
    "fair_balanced_accuracy_scorer",
    "group_rates",
    "make_fair_scorer",
    "parity_gap",
    "selection_rate_gap",
    "true_positive_rate_gap",
]


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    return array


def group_rates(values: Any, *, sensitive_features: Any, rows: Any = None) -> dict:
    """Mean of ``values`` within each group, over the rows selected by ``rows``.

    Parameters
    ----------
    values : array-like of shape (n_samples,)
        E.g. 0/1 decisions (selection rates) or scores.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group labels; several columns form intersectional groups.
    rows : array-like of bool, shape (n_samples,), optional
        Restrict to these rows (e.g. ``y_true == 1`` for true positive rates). Groups
        with no selected row are left out.

    Returns
    -------
    rates : dict
        ``{group label: mean}`` in the order of the sorted group labels.

    Examples
    --------
    >>> from sklearn_metaedit.metrics import group_rates
    >>> group_rates([1, 0, 1, 1], sensitive_features=["a", "a", "b", "b"])
    {'a': 0.5, 'b': 1.0}
    """
    values = _as_1d(values, "values").astype(np.float64)
    labels = check_sensitive_features(sensitive_features, len(values))
    if rows is not None:
        rows = _as_1d(rows, "rows").astype(bool)
        if len(rows) != len(values):
            raise ValueError(f"rows has {len(rows)} entries but values has {len(values)}.")
        values, labels = values[rows], labels[rows]
    groups = fit_groups(labels)
    codes = encode_groups(labels, groups)
    sums = np.bincount(codes, weights=values, minlength=len(groups))
    counts = np.bincount(codes, minlength=len(groups))
    return {g: float(sums[i] / counts[i]) for i, g in enumerate(groups.tolist())}


def _gap(rates: dict) -> float:
    if len(rates) < 2:
        return 0.0
    values = list(rates.values())
    return float(max(values) - min(values))


def selection_rate_gap(y_pred: Any, *, sensitive_features: Any) -> float:
    """Demographic parity gap: largest minus smallest group selection rate.

    Equals fairlearn's ``demographic_parity_difference`` for 0/1 predictions.

    Parameters
    ----------
    y_pred : array-like of shape (n_samples,)
        0/1 decisions (or scores: the gap of group means).
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)

    Returns
    -------
    gap : float
        0 when fewer than two groups are present.

    Examples
    --------
    >>> from sklearn_metaedit.metrics import selection_rate_gap
    >>> selection_rate_gap([1, 0, 1, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    return _gap(group_rates(y_pred, sensitive_features=sensitive_features))


def true_positive_rate_gap(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Equal opportunity gap: largest minus smallest group true positive rate.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels.
    y_pred : array-like of shape (n_samples,)
        0/1 decisions.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)

    Returns
    -------
    gap : float

    Examples
    --------
    >>> from sklearn_metaedit.metrics import true_positive_rate_gap
    >>> true_positive_rate_gap([1, 1, 1, 0], [1, 0, 1, 1], sensitive_features=[0, 0, 1, 1])
    0.5
    """
    y_true = _as_1d(y_true, "y_true")
    return _gap(group_rates(y_pred, sensitive_features=sensitive_features, rows=y_true == 1))


def equalized_odds_gap(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Equalized odds gap: the larger of the true- and false-positive-rate gaps.

    Equals fairlearn's ``equalized_odds_difference`` (``agg="worst_case"``).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)

    Returns
    -------
    gap : float

    Examples
    --------
    >>> from sklearn_metaedit.metrics import equalized_odds_gap
    >>> equalized_odds_gap([1, 1, 0, 0], [1, 0, 0, 0], sensitive_features=[0, 1, 0, 1])
    1.0
    """
    y_true = _as_1d(y_true, "y_true")
    tpr = group_rates(y_pred, sensitive_features=sensitive_features, rows=y_true == 1)
    fpr = group_rates(y_pred, sensitive_features=sensitive_features, rows=y_true == 0)
    return max(_gap(tpr), _gap(fpr))


def parity_gap(
    y_true: Any, y_pred: Any, *, sensitive_features: Any, constraint: str = "demographic_parity"
) -> float:
    """The gap that ``constraint`` bounds: selection-rate, TPR, or equalized-odds gap.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or None
        Labels; ignored (and may be None) for demographic parity.
    y_pred : array-like of shape (n_samples,)
    sensitive_features : array-like
    constraint : {"demographic_parity", "equal_opportunity", "equalized_odds"}

    Returns
    -------
    gap : float

    Examples
    --------
    >>> from sklearn_metaedit.metrics import parity_gap
    >>> parity_gap(None, [1, 0, 1, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    if constraint not in _GAPS:
        raise ValueError(f"constraint must be one of {list(CONSTRAINTS)}, got {constraint!r}.")
    if constraint == "demographic_parity":
        return selection_rate_gap(y_pred, sensitive_features=sensitive_features)
    if y_true is None:
        raise ValueError(f"constraint={constraint!r} needs y_true (the labels); got None.")
    return _GAPS[constraint](y_true, y_pred, sensitive_features=sensitive_features)


#: The gap each constraint bounds, as ``gap(y_true, y_pred, *, sensitive_features)``.
_GAPS = {
    "demographic_parity": lambda y_true, y_pred, **kw: selection_rate_gap(y_pred, **kw),
    "equal_opportunity": true_positive_rate_gap,
    "equalized_odds": equalized_odds_gap,
}
assert set(_GAPS) == set(CONSTRAINTS), "every constraint needs its gap"


# --------------------------------------------------------------------------- scorers


def _final_step(estimator):
    """The estimator that makes the predictions, and the transformers in front of it."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return steps[-1][1], estimator[:-1]
    return estimator, None


def _accepts_sensitive_features(method: Callable) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "sensitive_features" in parameters


def _groups_from_estimator(estimator, X):
    """Group labels read from X through the predicting step's ``sensitive_feature``."""
    final, head = _final_step(estimator)
    column = getattr(final, "sensitive_feature", None)
    if column is None:
        return None
    Xt = head.transform(X) if head is not None else X
    return resolve_sensitive_features(Xt, None, column)


class _FairScorer:
    """Scorer that passes ``sensitive_features`` to ``predict`` and to the metric."""

    def __init__(self, metric, name, epsilon, constraint):
        self.metric = metric
        self.name = name
        self.epsilon = epsilon
        self.constraint = constraint

    def __repr__(self) -> str:
        extra = (
            ""
            if self.epsilon is None
            else f", epsilon={self.epsilon}, constraint={self.constraint!r}"
        )
        return f"make_fair_scorer({self.name!r}{extra})"

    def get_metadata_routing(self) -> MetadataRequest:
        """Request ``sensitive_features`` (and ``sample_weight``) for scoring."""
        request = MetadataRequest(owner=self)
        request.score.add_request(param="sensitive_features", alias=True)
        return request

    def __call__(self, estimator, X, y_true, sensitive_features=None, **kwargs) -> float:
        """Score ``estimator`` on ``X`` against ``y_true`` with the groups of the rows."""
        if sensitive_features is None:
            sensitive_features = _groups_from_estimator(estimator, X)
        final, _ = _final_step(estimator)
        if sensitive_features is not None and _accepts_sensitive_features(final.predict):
            y_pred = estimator.predict(X, sensitive_features=sensitive_features)
        else:
            y_pred = estimator.predict(X)
        score = float(self.metric(y_true, y_pred))
        if self.epsilon is None:
            return score
        if sensitive_features is None:
            raise ValueError(
                f"The scorer {self!r} needs the sensitive features: route them "
                "(sklearn.set_config(enable_metadata_routing=True) and pass "
                "sensitive_features=... to fit), or give the estimator a `sensitive_feature` "
                "column of X."
            )
        gap = parity_gap(
            y_true, y_pred, sensitive_features=sensitive_features, constraint=self.constraint
        )
        # Any model within the bound ranks above any model outside it; outside, the
        # smaller violation ranks higher.
        return score if gap <= self.epsilon else -gap


_METRICS = {"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score}


def make_fair_scorer(
    metric: str | Callable = "accuracy",
    *,
    epsilon: float | None = None,
    constraint: str = "demographic_parity",
):
    """Make a scorer for ``GridSearchCV`` / ``cross_validate`` that gives ``predict`` the groups.

    Parameters
    ----------
    metric : {"accuracy", "balanced_accuracy"} or callable, default="accuracy"
        A function ``metric(y_true, y_pred) -> float``, greater is better.
    epsilon : float, optional
        If given, the score is "``metric`` subject to gap <= epsilon": ``metric`` when the
        predictions' ``constraint`` gap on the scored rows is at most ``epsilon``, and
        ``-gap`` (always below any feasible score in [0, 1]) otherwise.
    constraint : {"demographic_parity", "equal_opportunity", "equalized_odds"}
        The gap that ``epsilon`` bounds.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y_true, sensitive_features=None) -> float``, which
        requests ``sensitive_features`` under metadata routing.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_metaedit.datasets import make_biased_classification
    >>> from sklearn_metaedit.metrics import make_fair_scorer
    >>> X, y, groups = make_biased_classification(300, random_state=0)
    >>> model = LogisticRegression().fit(X, y)
    >>> scorer = make_fair_scorer("accuracy", epsilon=0.5)
    >>> 0.5 < scorer(model, X, y, sensitive_features=groups) <= 1.0
    True
    """
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(
                f"metric must be one of {sorted(_METRICS)} or a callable, got {metric!r}."
            )
        name, function = metric, _METRICS[metric]
    elif callable(metric):
        name, function = getattr(metric, "__name__", repr(metric)), metric
    else:
        raise ValueError(f"metric must be a string or a callable, got {metric!r}.")
    if epsilon is not None and not (np.isfinite(epsilon) and 0 <= epsilon < 1):
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}.")
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {list(CONSTRAINTS)}, got {constraint!r}.")
    return _FairScorer(function, name, epsilon, constraint)


#: Accuracy, with the groups passed to ``predict``.
fair_accuracy_scorer = make_fair_scorer("accuracy")
#: Balanced accuracy, with the groups passed to ``predict``.
fair_balanced_accuracy_scorer = make_fair_scorer("balanced_accuracy")
