"""The editor's part of ``python -m sklearn_metaedit demo``: prune a held-out network."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._mlp import MLP
from ._editor import MetanetEditor
from ._graph import as_sequential, extract_weights, load_weights
from ._population import make_population
from ._requirements import magnitude_prune_weights, weight_sparsity
from ._task_data import TaskData

__all__ = ["run_editor_demo"]


def run_editor_demo(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    target: float = 0.9,
    n_networks: int = 10,
    max_rows: int = 10_000,
    max_steps: int = 200,
    random_state: int = 0,
    verbose: int = 1,
) -> pd.DataFrame:
    """Build a small population, fit a sparsity editor and edit a held-out network.

    The last network of the population is held out of the editor's training; it is
    pruned to ``target`` sparsity once by one-shot global magnitude pruning and once by
    the editor, and both are scored on the test split beside the original.

    Parameters
    ----------
    X_train, X_test : array-like of shape (n_samples, n_features)
        Numeric (preprocessed) features.
    y_train, y_test : array-like of shape (n_samples,)
        Labels.
    target : float, default=0.9
        Fraction of weights to zero.
    n_networks : int, default=10
        Population size (MLPs with one hidden layer of 16 or 32 units).
    max_rows : int, default=10_000
        The population and the editor train on at most this many training rows (a
        random subset), to keep the demo short.
    max_steps : int, default=200
        Training steps of the metanetwork.
    random_state : int, default=0
    verbose : int, default=1
        Print what is being done.

    Returns
    -------
    table : pandas.DataFrame
        Rows "original", "magnitude pruning", "MetanetEditor"; columns ``accuracy`` (test
        split), ``sparsity`` (fraction of zero weights) and ``seconds`` (time to produce
        that network: training the population's share for the original, one pruning
        pass, one editor forward pass; the editor's own training time is printed).
    """
    # the demo's tensors are small: one thread avoids the synchronisation that made it
    # several times slower when other processes keep the cores busy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(
            X_train,
            y_train,
            X_test,
            y_test,
            target,
            n_networks,
            max_rows,
            max_steps,
            random_state,
            verbose,
        )
    finally:
        torch.set_num_threads(threads)


def _run(
    X_train,
    y_train,
    X_test,
    y_test,
    target,
    n_networks,
    max_rows,
    max_steps,
    random_state,
    verbose,
) -> pd.DataFrame:
    from skorch import NeuralNetClassifier

    X_train = np.asarray(X_train, dtype=np.float32)
    X_test = np.asarray(X_test, dtype=np.float32)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(X_train) > max_rows:
        rows = np.random.default_rng(random_state).choice(len(X_train), max_rows, replace=False)
        X_train, y_train = X_train[rows], y_train[rows]
    say = print if verbose else (lambda *args, **kwargs: None)
    estimator = NeuralNetClassifier(
        MLP,
        module__n_features=X_train.shape[1],
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        batch_size=256,
        max_epochs=5,
        train_split=None,
        verbose=0,
    )
    started = time.perf_counter()
    population = make_population(
        estimator,
        X_train,
        y_train,
        n_networks=n_networks,
        param_distributions={"module__hidden_sizes": [(16,), (32,)]},
        random_state=random_state,
    )
    population_seconds = time.perf_counter() - started
    say(f"  trained a population of {n_networks} MLPs in {population_seconds:.1f}s")
    # a small metanetwork: the demo trains it in seconds on a CPU
    editor = MetanetEditor(
        "sparsity",
        target=target,
        max_steps=max_steps,
        hidden_channels=16,
        mlp_hidden=32,
        num_layers=2,
        networks_per_step=4,
        rows_per_step=256,
        learning_rate=1e-3,
        temperature=0.3,
        random_state=random_state,
    )
    editor.fit(population[:-1], data=TaskData(X_train, y_train))
    say(
        f"  fitted a sparsity editor (target {target:.0%}) on {n_networks - 1} networks in "
        f"{editor.fit_seconds_:.1f}s"
    )
    held_out = population[-1]
    module = as_sequential(held_out)

    started = time.perf_counter()
    pruned_weights = magnitude_prune_weights(extract_weights(module), target)
    pruned = load_weights(module, pruned_weights).eval()
    prune_seconds = time.perf_counter() - started

    started = time.perf_counter()
    (edited,) = editor.transform([held_out])
    edit_seconds = time.perf_counter() - started

    X_t = torch.as_tensor(X_test)
    with torch.no_grad():
        pruned_pred = pruned(X_t).argmax(dim=1).numpy()
    rows = {
        "original": (
            (held_out.predict(X_test) == y_test).mean(),
            weight_sparsity(extract_weights(module)),
            population_seconds / n_networks,
        ),
        "magnitude pruning": (
            (pruned_pred == y_test).mean(),
            weight_sparsity(pruned_weights),
            prune_seconds,
        ),
        "MetanetEditor": (
            (edited.predict(X_test) == y_test).mean(),
            weight_sparsity(extract_weights(edited.module_)),
            edit_seconds,
        ),
    }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["accuracy", "sparsity", "seconds"]
    ).astype(float)
