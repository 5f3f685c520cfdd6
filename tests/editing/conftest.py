"""Tiny tasks and populations shared by the editing tests (seconds, not minutes)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, make_population


def make_net(n_features, **params):
    defaults = dict(
        module=MLP,
        module__n_features=n_features,
        module__hidden_sizes=(16,),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=8,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    return NeuralNetClassifier(**{**defaults, **params})


@pytest.fixture(scope="session")
def task():
    X, y = make_classification(
        n_samples=800, n_features=8, n_informative=5, n_redundant=1, random_state=0
    )
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def population(task):
    X, y = task
    return make_population(
        make_net(X.shape[1]),
        X,
        y,
        n_networks=8,
        param_distributions={"module__hidden_sizes": [(16,), (12, 12), (20,)]},
        random_state=0,
    )
