"""Side-by-side comparisons of this package's estimators and their peers on one data set.

Shared by ``python -m sklearn_metaedit demo`` and the scripts in ``benchmarks/``: each
function fits every method on the same data, in one process, and returns one row per
method (accuracy, the parity gap fairlearn reports, seconds).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ._groups import encode_groups, fit_groups
from .datasets import load_adult, load_german_credit, make_preprocessor
from .metrics import selection_rate_gap

__all__ = ["TabularTask", "compare_fairness_layer", "load_task"]


@dataclass
class TabularTask:
    """A data set as float32 matrices, with the group of every row.

    ``X_*`` exclude the sensitive columns (the networks are group-blind); the groups
    are passed as ``sensitive_features`` where a method needs them.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    s_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    s_test: np.ndarray
    feature_names: list

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def load_task(
    dataset: str = "adult", sensitive: str = "sex", *, random_state: int = 0
) -> TabularTask:
    """Load a bundled data set as a :class:`TabularTask`.

    Adult uses its official train/test split; German credit (1,000 rows) a stratified
    70/30 split drawn with ``random_state``.
    """
    if dataset == "adult":
        train, test = load_adult(split="train"), load_adult(split="test")
        frames = (train.data, test.data)
        targets = (train.target.to_numpy(), test.target.to_numpy())
        groups = (train.sensitive[sensitive], test.sensitive[sensitive])
        drop = ("sex", "race")
    elif dataset == "german":
        from sklearn.model_selection import train_test_split

        german = load_german_credit()
        rows = np.arange(len(german.data))
        tr, te = train_test_split(
            rows, test_size=0.3, stratify=german.target, random_state=random_state
        )
        frames = (german.data.iloc[tr], german.data.iloc[te])
        targets = (german.target.to_numpy()[tr], german.target.to_numpy()[te])
        groups = (german.sensitive[sensitive].iloc[tr], german.sensitive[sensitive].iloc[te])
        # both columns encode a sensitive attribute (sex; age group)
        drop = ("personal_status_sex", "age")
    else:
        raise ValueError(f"dataset must be 'adult' or 'german', got {dataset!r}.")
    pre = make_preprocessor(drop=drop)
    X_train = pre.fit_transform(frames[0])
    X_test = pre.transform(frames[1])
    return TabularTask(
        name=f"{dataset}/{sensitive}",
        X_train=X_train,
        y_train=targets[0].astype(np.int64),
        s_train=np.asarray(groups[0].astype(str)),
        X_test=X_test,
        y_test=targets[1].astype(np.int64),
        s_test=np.asarray(groups[1].astype(str)),
        feature_names=list(pre.get_feature_names_out()),
    )


def training_schedule(n_rows: int, *, steps: int = 1200) -> dict:
    """Batch size and epochs that give about ``steps`` optimiser steps on ``n_rows`` rows.

    Large tables (Adult) get batches of 256 and ~10 epochs; small ones (German credit)
    smaller batches and more epochs, so that the network trains as much either way.
    """
    batch_size = int(min(256, max(32, n_rows // 20)))
    batches_per_epoch = max(1, int(np.ceil(n_rows / batch_size)))
    max_epochs = int(np.clip(np.ceil(steps / batches_per_epoch), 1, 300))
    return {"batch_size": batch_size, "max_epochs": max_epochs}


def mlp_classifier(n_features: int, *, max_epochs: int = 10, batch_size: int = 256, **kwargs):
    """The skorch MLP every comparison starts from (two hidden layers of 64)."""
    from skorch import NeuralNetClassifier

    from ._mlp import MLP

    params = dict(
        module=MLP,
        module__n_features=n_features,
        module__hidden_sizes=(64, 64),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=batch_size,
        max_epochs=max_epochs,
        train_split=None,
        verbose=0,
    )
    params.update(kwargs)
    return NeuralNetClassifier(**params)


class Float64Proba(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose ``predict_proba`` returns float64.

    fairlearn's ThresholdOptimizer writes float64 values into a Series built from the
    estimator's probabilities, which pandas >= 3 refuses for a float32 Series (what skorch
    returns).
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y):
        return self

    def __sklearn_is_fitted__(self):
        return True

    @property
    def classes_(self):
        return self.estimator.classes_

    def predict_proba(self, X):
        return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)

    def predict(self, X):
        return self.estimator.predict(X)


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
    (the whole test split is one prediction batch). ``progress``, if given, is called
    with the name of each method before it starts.
    """
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    from .fairness._layer import FairnessLayerClassifier
    from .fairness._projection import parity_decisions, project_parity

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
            groups = fit_groups(np.asarray(str_, dtype=object))
            codes = torch.as_tensor(encode_groups(np.asarray(ste, dtype=object), groups))
            scores = torch.as_tensor(net.predict_proba(Xte)[:, 1], dtype=torch.float64)
            projected = project_parity(scores, codes, epsilon, n_groups=len(groups))
            y_pred = parity_decisions(projected, codes, epsilon, n_groups=len(groups)).numpy()
            rows.append(_row(method, yte, y_pred, ste, net.fit_seconds_))
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
