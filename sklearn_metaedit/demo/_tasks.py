"""The demo's and the benchmarks' data sets and the network every comparison starts from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets import load_adult, load_german_credit, make_preprocessor

__all__ = ["TabularTask", "load_task", "mlp_classifier", "training_schedule"]


@dataclass
class TabularTask:
    """A data set as float32 matrices, with the group of every row.

    ``X_*`` exclude the sensitive columns (the networks are group-blind); the groups
    are passed as ``sensitive_features`` where a method needs them.

    Attributes
    ----------
    name : str
        ``"<dataset>/<sensitive attribute>"``.
    X_train, X_test : ndarray of float32, shape (n_rows, n_features)
        One-hot encoded, scaled inputs.
    y_train, y_test : ndarray of int64, shape (n_rows,)
    s_train, s_test : ndarray of str, shape (n_rows,)
        The group of every row.
    feature_names : list of str
        The names of the input columns.
    n_features : int
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
    70/30 split drawn with ``random_state``. The sensitive attributes' own columns are
    left out of the inputs (the networks are group-blind).

    Parameters
    ----------
    dataset : {"adult", "german"}, default="adult"
    sensitive : str, default="sex"
        The group attribute: ``sex`` or ``race`` (Adult), ``sex`` or ``age_group``
        (German credit).
    random_state : int, default=0
        Seeds German credit's split.

    Returns
    -------
    task : TabularTask

    Examples
    --------
    >>> task = load_task("german", "sex")
    >>> task.X_train.shape[0], task.X_test.shape[0], task.X_train.dtype
    (700, 300, dtype('float32'))
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

    Parameters
    ----------
    n_rows : int
    steps : int, default=1200

    Returns
    -------
    schedule : dict
        ``batch_size`` and ``max_epochs``, as skorch takes them.

    Examples
    --------
    >>> training_schedule(30_000)
    {'batch_size': 256, 'max_epochs': 11}
    """
    batch_size = int(min(256, max(32, n_rows // 20)))
    batches_per_epoch = max(1, int(np.ceil(n_rows / batch_size)))
    max_epochs = int(np.clip(np.ceil(steps / batches_per_epoch), 1, 300))
    return {"batch_size": batch_size, "max_epochs": max_epochs}


def mlp_classifier(n_features: int, *, max_epochs: int = 10, batch_size: int = 256, **kwargs):
    """The skorch MLP every comparison starts from (two hidden layers of 64).

    Parameters
    ----------
    n_features : int
    max_epochs : int, default=10
    batch_size : int, default=256
    **kwargs
        Further parameters of ``NeuralNetClassifier`` (they override the defaults).

    Returns
    -------
    net : skorch.NeuralNetClassifier
        Unfitted; Adam at learning rate 1e-3, no internal validation split.
    """
    from skorch import NeuralNetClassifier

    from .._mlp import MLP

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
