"""The fairness layer beside its peers on one data set: one row per method.

Every method is fitted on the same training split, in one process, and scored on the
same test split (accuracy, the parity gap fairlearn reports, seconds).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import torch

from .._groups import encode_groups, fit_groups
from ..metrics import selection_rate_gap
from ._baselines import Float64Proba
from ._tasks import TabularTask, mlp_classifier, training_schedule

__all__ = ["compare_fairness_layer"]


def _fit_seeded(net, X, y, random_state):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        return net.fit(X, y)


def _row(method, y_true, y_pred, groups, seconds, **extra):
    return {
        "method": method,
        "accuracy": float(np.mean(np.asarray(y_pred) == y_true)),
        "dp_gap": selection_rate_gap(y_pred, sensitive_features=groups),
        "fit_seconds": seconds,
        **extra,
    }


def compare_fairness_layer(
    task: TabularTask,
    *,
    epsilon: float = 0.05,
    steps: int = 1200,
    random_state: int = 0,
    methods: tuple[str, ...] = (
        "unconstrained MLP",
        "FairnessLayerClassifier",
        "MLP + projection at test",
        "ThresholdOptimizer (prefit MLP)",
        "ExponentiatedGradient (LogReg)",
    ),
    progress=None,
) -> pd.DataFrame:
    """Test accuracy and selection-rate gap of the fairness layer and its peers.

    Every method is fitted on ``task``'s training split and scored on its test split
    (the whole test split is one prediction batch).

    Parameters
    ----------
    task : TabularTask
    epsilon : float, default=0.05
        The parity gap allowed.
    steps : int, default=1200
        About this many optimiser steps for every network (see
        :func:`training_schedule`).
    random_state : int, default=0
    methods : tuple of str
        Which methods to run, among the defaults.
    progress : callable, default=None
        Called with the name of each method before it starts.

    Returns
    -------
    table : pandas.DataFrame
        One row per method: ``method``, ``task``, ``epsilon``, ``accuracy`` (test
        split), ``dp_gap`` (fairlearn's ``demographic_parity_difference`` of the 0/1
        test predictions), ``fit_seconds`` and ``gap_within_epsilon``.
    """
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    from ..fairness import FairnessLayerClassifier, parity_decisions, project_parity

    rows = []
    schedule = training_schedule(len(task.X_train), steps=steps)
    Xtr, ytr, str_, Xte, yte, ste = (
        task.X_train,
        task.y_train,
        task.s_train,
        task.X_test,
        task.y_test,
        task.s_test,
    )
    plain = None

    def plain_mlp():
        nonlocal plain
        if plain is None:
            start = time.perf_counter()
            plain = _fit_seeded(
                mlp_classifier(task.n_features, **schedule), Xtr, ytr, random_state
            )
            plain.fit_seconds_ = time.perf_counter() - start
        return plain

    for method in methods:
        if progress is not None:
            progress(method)
        if method == "unconstrained MLP":
            net = plain_mlp()
            rows.append(_row(method, yte, net.predict(Xte), ste, net.fit_seconds_))
        elif method == "FairnessLayerClassifier":
            start = time.perf_counter()
            clf = FairnessLayerClassifier(
                mlp_classifier(task.n_features, **schedule),
                epsilon=epsilon,
                random_state=random_state,
            ).fit(Xtr, ytr, sensitive_features=str_)
            seconds = time.perf_counter() - start
            rows.append(_row(method, yte, clf.predict(Xte, sensitive_features=ste), ste, seconds))
        elif method == "MLP + projection at test":
            net = plain_mlp()
            # the MLP's training, which this method shares with the unconstrained MLP, and
            # the projection of the test batch, which it adds
            start = time.perf_counter()
            groups = fit_groups(np.asarray(str_, dtype=object))
            codes = torch.as_tensor(encode_groups(np.asarray(ste, dtype=object), groups))
            scores = torch.as_tensor(net.predict_proba(Xte)[:, 1], dtype=torch.float64)
            projected = project_parity(scores, codes, epsilon, n_groups=len(groups))
            y_pred = parity_decisions(projected, codes, epsilon, n_groups=len(groups)).numpy()
            seconds = net.fit_seconds_ + time.perf_counter() - start
            rows.append(_row(method, yte, y_pred, ste, seconds))
        elif method == "ThresholdOptimizer (prefit MLP)":
            net = plain_mlp()
            start = time.perf_counter()
            to = ThresholdOptimizer(
                estimator=Float64Proba(net),
                constraints="demographic_parity",
                objective="accuracy_score",
                prefit=True,
                predict_method="predict_proba",
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                to.fit(Xtr, ytr, sensitive_features=str_)
            seconds = net.fit_seconds_ + time.perf_counter() - start
            y_pred = to.predict(Xte, sensitive_features=ste, random_state=random_state)
            rows.append(_row(method, yte, y_pred, ste, seconds))
        elif method == "ExponentiatedGradient (LogReg)":
            start = time.perf_counter()
            eg = ExponentiatedGradient(
                LogisticRegression(max_iter=1000),
                constraints=DemographicParity(difference_bound=epsilon),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eg.fit(Xtr, ytr, sensitive_features=str_)
            seconds = time.perf_counter() - start
            y_pred = eg.predict(Xte, random_state=random_state)
            rows.append(_row(method, yte, y_pred, ste, seconds))
        else:
            raise ValueError(f"unknown method {method!r}.")
    table = pd.DataFrame(rows)
    table.insert(1, "task", task.name)
    table.insert(2, "epsilon", epsilon)
    table["gap_within_epsilon"] = table["dp_gap"] <= epsilon
    return table
