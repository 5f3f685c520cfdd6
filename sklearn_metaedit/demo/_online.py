"""Online decisions beside their peers: streams, their summaries, the demo's table.

The peers are fairlearn's ``ThresholdOptimizer`` and the within-batch primal-dual
(:func:`~sklearn_metaedit.demo.within_batch_primal_dual`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from .._groups import check_sensitive_features, encode_groups, fit_groups
from ..fairness import OnlineFairPredictor
from ..metrics import selection_rate_gap
from ._baselines import Float64Proba, within_batch_primal_dual

__all__ = ["drifting_order", "online_gap_trajectory", "run_online_demo", "stream_summary"]


def drifting_order(
    groups: np.ndarray,
    majority: Any,
    *,
    first_share: float = 0.9,
    second_share: float = 0.43,
    random_state: int | None = None,
) -> np.ndarray:
    """Row order of a stream whose group proportions change half-way.

    The first half holds ``first_share`` rows of ``majority``, the second half
    ``second_share``; both halves are as long as the rows allow, drawn without
    replacement, shuffled within each half.

    Parameters
    ----------
    groups : ndarray of shape (n_samples,)
        Group label of each row.
    majority : label
        The group whose share changes; every other group makes up the rest.
    first_share, second_share : float
        Shares of ``majority`` in the two halves.
    random_state : int or None

    Returns
    -------
    order : ndarray of int64, shape (2 * half,)

    Examples
    --------
    >>> import numpy as np
    >>> order = drifting_order(np.array(["m"] * 70 + ["f"] * 30), "m", random_state=0)
    >>> groups = np.array(["m"] * 70 + ["f"] * 30)[order]
    >>> half = len(order) // 2
    >>> [round(float((part == "m").mean()), 2) for part in (groups[:half], groups[half:])]
    [0.91, 0.43]
    """
    rng = np.random.default_rng(random_state)
    groups = np.asarray(groups)
    major = rng.permutation(np.flatnonzero(groups == majority))
    minor = rng.permutation(np.flatnonzero(groups != majority))
    half = int(
        min(
            len(major) / (first_share + second_share),
            len(minor) / (2.0 - first_share - second_share),
        )
    )
    a, b = round(first_share * half), round(second_share * half)
    first = np.concatenate([major[:a], minor[: half - a]])
    second = np.concatenate([major[a : a + b], minor[half - a : 2 * half - a - b]])
    return np.concatenate([rng.permutation(first), rng.permutation(second)])


def stream_summary(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict:
    """Accuracy, pooled selection-rate gap, and the gap over the stream's last half.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples,)
    groups : ndarray of shape (n_samples,)

    Returns
    -------
    summary : dict
        ``accuracy``, ``pooled_gap``, ``gap_last_half``.

    Examples
    --------
    >>> import numpy as np
    >>> stream_summary(np.array([1, 0, 1, 0]), np.array([1, 0, 0, 0]), np.array([0, 1, 0, 1]))
    {'accuracy': 0.75, 'pooled_gap': 0.5, 'gap_last_half': 0.0}
    """
    half = len(y_pred) // 2
    return {
        "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred))),
        "pooled_gap": selection_rate_gap(y_pred, sensitive_features=groups),
        "gap_last_half": selection_rate_gap(y_pred[half:], sensitive_features=groups[half:]),
    }


def _stream(X_train, y_train, s_train, X_test, y_test, s_test, random_state):
    """Validated arrays, the test rows in the stream's (seeded) order, and the base model."""
    X_train, X_test = np.asarray(X_train), np.asarray(X_test)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    s_train = check_sensitive_features(s_train, len(y_train))
    s_test = check_sensitive_features(s_test, len(y_test))
    order = np.random.default_rng(random_state).permutation(len(y_test))
    X_test, y_test, s_test = X_test[order], y_test[order], s_test[order]
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    return X_train, y_train, s_train, X_test, y_test, s_test, model


def run_online_demo(
    X_train: Any,
    y_train: Any,
    s_train: Any,
    X_test: Any,
    y_test: Any,
    s_test: Any,
    *,
    epsilon: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:
    """Stream the test rows in a shuffled order, one decision at a time, four ways.

    The base model is a logistic regression fitted on the training rows. Rows: the
    unconstrained model, fairlearn's ``ThresholdOptimizer`` (``tol=epsilon``, fitted
    offline on the training rows, randomised), the within-batch primal-dual at batch
    size 1, and :class:`OnlineFairPredictor` deciding the rows one at a time in stream
    order (``predict`` replays the stream row by row: the same decisions as one
    ``partial_predict`` call per row, with the probabilities computed in one pass).

    Parameters
    ----------
    X_train, y_train, s_train : array-like
        Training features, 0/1 labels and group labels.
    X_test, y_test, s_test : array-like
        The stream's rows, labels and groups.
    epsilon : float, default=0.05
    random_state : int, default=0
        Seeds the stream's order and ThresholdOptimizer's randomisation.

    Returns
    -------
    table : DataFrame
        Index: the four methods; columns ``accuracy``, ``pooled_gap``, ``gap_last_half``.

    Examples
    --------
    >>> from sklearn_metaedit.datasets import make_biased_classification
    >>> X, y, s = make_biased_classification(1200, bias=2.0, random_state=0)
    >>> table = run_online_demo(X[:600], y[:600], s[:600], X[600:], y[600:], s[600:])
    >>> bool(table.loc["OnlineFairPredictor (batch size 1)", "pooled_gap"] <= 0.05)
    True
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    X_train, y_train, s_train, X_test, y_test, s_test, model = _stream(
        X_train, y_train, s_train, X_test, y_test, s_test, random_state
    )
    scores = np.asarray(model.predict_proba(X_test)[:, 1], dtype=np.float64)
    rows = {"unconstrained": (scores >= 0.5).astype(np.int64)}

    optimizer = ThresholdOptimizer(
        estimator=Float64Proba(model), prefit=True, predict_method="predict_proba", tol=epsilon
    ).fit(X_train, y_train, sensitive_features=s_train)
    rows[f"ThresholdOptimizer (tol={epsilon})"] = optimizer.predict(
        X_test, sensitive_features=s_test, random_state=random_state
    )

    codes = encode_groups(s_test, fit_groups(np.concatenate([s_train, s_test])))
    rows["within-batch primal-dual (batch size 1)"] = within_batch_primal_dual(
        scores, codes, batch_size=1, epsilon=epsilon
    )

    online = OnlineFairPredictor(model, epsilon=epsilon, prefit=True)
    online.fit(X_train, y_train, sensitive_features=s_train)
    rows["OnlineFairPredictor (batch size 1)"] = online.predict(X_test, sensitive_features=s_test)
    table = pd.DataFrame(
        {name: stream_summary(y_test, pred, s_test) for name, pred in rows.items()}
    ).T
    table.index.name = "method"
    return table


def online_gap_trajectory(
    X_train: Any,
    y_train: Any,
    s_train: Any,
    X_test: Any,
    y_test: Any,
    s_test: Any,
    *,
    epsilon: float = 0.05,
    random_state: int = 0,
    n_points: int = 100,
) -> pd.DataFrame:
    """The pooled gap and its guaranteed bound along the stream of :func:`run_online_demo`.

    The same base model (a logistic regression fitted on the training rows) and the same
    stream order; :class:`OnlineFairPredictor` decides the stream in consecutive chunks
    (the decisions of batch size 1, since rows are decided in order), and after each
    chunk its report gives the pooled gap so far and the bound for that many decisions.

    Parameters
    ----------
    X_train, y_train, s_train : array-like
        Training features, 0/1 labels and group labels.
    X_test, y_test, s_test : array-like
        The stream's rows, labels and groups.
    epsilon : float, default=0.05
    random_state : int, default=0
        Seeds the stream's order, as in :func:`run_online_demo`.
    n_points : int, default=100
        About this many checkpoints, spaced evenly on a log scale of the stream length.

    Returns
    -------
    trajectory : DataFrame
        One row per checkpoint; columns ``n_decisions``, ``pooled_gap`` (the online
        decisions so far), ``bound`` (the report's guaranteed ceiling on it) and
        ``unconstrained_gap`` (the base model's 0.5-threshold decisions so far).

    Examples
    --------
    >>> from sklearn_metaedit.datasets import make_biased_classification
    >>> X, y, s = make_biased_classification(1200, bias=2.0, random_state=0)
    >>> path = online_gap_trajectory(X[:600], y[:600], s[:600], X[600:], y[600:], s[600:])
    >>> int(path["n_decisions"].iloc[-1]), bool((path["pooled_gap"] <= path["bound"]).all())
    (600, True)
    """
    X_train, y_train, s_train, X_test, y_test, s_test, model = _stream(
        X_train, y_train, s_train, X_test, y_test, s_test, random_state
    )
    plain = (model.predict_proba(X_test)[:, 1] >= 0.5).astype(np.int64)
    online = OnlineFairPredictor(model, epsilon=epsilon, prefit=True)
    online.fit(X_train, y_train, sensitive_features=s_train)

    ends = np.unique(np.geomspace(1, len(y_test), num=n_points).round().astype(np.int64))
    codes = encode_groups(s_test, fit_groups(np.concatenate([s_train, s_test])))
    n_groups = int(codes.max()) + 1
    # running counts per group give every checkpoint's unconstrained gap in one pass
    seen = np.cumsum(np.eye(n_groups, dtype=np.int64)[codes], axis=0)
    chosen = np.cumsum(np.eye(n_groups, dtype=np.int64)[codes] * plain[:, None], axis=0)
    rows, start = [], 0
    for end in ends:
        online.partial_predict(X_test[start:end], sensitive_features=s_test[start:end])
        start = end
        report = online.report()
        n, k = seen[end - 1], chosen[end - 1]
        rates = k[n > 0] / n[n > 0]
        rows.append(
            {
                "n_decisions": int(end),
                "pooled_gap": float(report.pooled_gap),
                "bound": float(report.bound),
                "unconstrained_gap": float(rates.max() - rates.min()),
            }
        )
    return pd.DataFrame(rows)
