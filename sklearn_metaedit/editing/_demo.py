"""The editor's part of ``python -m sklearn_metaedit demo``: prune a held-out network."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._compare import training_schedule
from .._mlp import MLP
from ._editor import MetanetEditor
from ._graph import as_sequential, extract_weights, load_weights
from ._population import make_population
from ._requirements import magnitude_prune_weights, weight_sparsity
from ._task_data import TaskData

__all__ = ["run_editor_demo", "run_editor_sweep"]


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
    with _one_thread():
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


@contextlib.contextmanager
def _one_thread():
    """One torch intra-op thread for the duration (tiny networks run faster on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
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
    say = print if verbose else (lambda *args, **kwargs: None)
    X_train, y_train, X_test, y_test = _arrays(
        X_train, y_train, X_test, y_test, max_rows, random_state
    )
    population, population_seconds = _population(X_train, y_train, n_networks, random_state, say)
    editor = _fit_editor(
        population[:-1], X_train, y_train, target, None, max_steps, random_state, say
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


def _arrays(X_train, y_train, X_test, y_test, max_rows, random_state):
    X_train = np.asarray(X_train, dtype=np.float32)
    X_test = np.asarray(X_test, dtype=np.float32)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(X_train) > max_rows:
        rows = np.random.default_rng(random_state).choice(len(X_train), max_rows, replace=False)
        X_train, y_train = X_train[rows], y_train[rows]
    return X_train, y_train, X_test, y_test


def _schedule(n_rows: int) -> dict:
    # about 200 optimiser steps: 5 epochs of 256 rows on 10,000 rows, and as many steps
    # on a small table such as German credit, where 5 epochs would leave the networks
    # predicting the majority class
    return training_schedule(n_rows, steps=200)


def _population(X_train, y_train, n_networks, random_state, say):
    from skorch import NeuralNetClassifier

    estimator = NeuralNetClassifier(
        MLP,
        module__n_features=X_train.shape[1],
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        **_schedule(len(X_train)),
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
    seconds = time.perf_counter() - started
    say(f"  trained a population of {n_networks} MLPs in {seconds:.1f}s")
    return population, seconds


def _fit_editor(networks, X_train, y_train, target, target_range, max_steps, random_state, say):
    # a small metanetwork: the demo trains it in seconds on a CPU
    editor = MetanetEditor(
        "sparsity",
        target=target,
        target_range=target_range,
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
    editor.fit(networks, data=TaskData(X_train, y_train))
    what = (
        f"target {target:.0%}"
        if target_range is None
        else (f"targets {target_range[0]:.0%}-{target_range[1]:.0%}")
    )
    say(
        f"  fitted a sparsity editor ({what}) on {len(networks)} networks in "
        f"{editor.fit_seconds_:.1f}s"
    )
    return editor


def _fine_tune(module, X, y, epochs, random_state, batch_size, lr=1e-3):
    """Train a pruned module for ``epochs`` with its zero weights held at zero."""
    masks = [p != 0 for p in module.parameters() if p.dim() == 2]
    weights = [p for p in module.parameters() if p.dim() == 2]
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.int64)
    generator = torch.Generator().manual_seed(random_state)
    module.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(X_t), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss_fn(module(X_t[rows]), y_t[rows]).backward()
            optimizer.step()
            # Adam's momentum would revive pruned weights; the mask keeps the sparsity
            with torch.no_grad():
                for w, keep in zip(weights, masks, strict=True):
                    w.mul_(keep)
    return module.eval()


def run_editor_sweep(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95),
    n_networks: int = 10,
    n_held_out: int = 3,
    fine_tune_epochs: int = 1,
    max_rows: int = 10_000,
    max_steps: int = 200,
    random_state: int = 0,
    verbose: int = 1,
) -> pd.DataFrame:
    """Prune held-out networks to several sparsities three ways, for the demo's report.

    One population is built; its last ``n_held_out`` networks are held out and the
    rest train one editor on the whole range of ``sparsities`` (``target_range``), so
    each sparsity is one ``transform(target=...)`` call, with no refit. Every held-out
    network is pruned to every sparsity by one-shot global magnitude pruning, by
    magnitude pruning followed by ``fine_tune_epochs`` of training with the pruned
    weights held at zero, and by the editor.

    Parameters
    ----------
    X_train, X_test : array-like of shape (n_samples, n_features)
        Numeric (preprocessed) features.
    y_train, y_test : array-like of shape (n_samples,)
        Labels.
    sparsities : tuple of float, default=(0.5, 0.8, 0.9, 0.95)
        Fractions of weights to zero.
    n_networks : int, default=10
        Population size, held-out networks included.
    n_held_out : int, default=3
        Networks edited (never seen by the editor in training).
    fine_tune_epochs : int, default=1
        Epochs of fine-tuning after magnitude pruning (on the training rows used, in
        the batches the population trained with).
    max_rows : int, default=10_000
        Training rows used (a random subset), as in :func:`run_editor_demo`.
    max_steps : int, default=200
        Training steps of the metanetwork.
    random_state : int, default=0
    verbose : int, default=1
        Print what is being done.

    Returns
    -------
    table : pandas.DataFrame
        One row per held-out network, method and target sparsity; columns
        ``network`` (0 to ``n_held_out - 1``), ``method`` ("original", "magnitude
        pruning", "magnitude pruning + fine-tuning", "MetanetEditor"), ``target``
        (0 for the original), ``accuracy`` (test split), ``sparsity`` (fraction of zero
        weights) and ``seconds`` (time to produce that network from the original). The
        editor's training time is in ``table.attrs["editor_fit_seconds"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(600, 8, random_state=0)
    >>> X = X.astype(np.float32)
    >>> table = run_editor_sweep(X[:400], y[:400], X[400:], y[400:], sparsities=(0.5, 0.9),
    ...                          n_networks=4, n_held_out=1, max_steps=5, verbose=0)
    >>> sorted(table["method"].unique())
    ['MetanetEditor', 'magnitude pruning', 'magnitude pruning + fine-tuning', 'original']
    """
    if not 1 <= n_held_out < n_networks:
        raise ValueError(
            f"n_held_out must be at least 1 and below n_networks={n_networks}, got {n_held_out}."
        )
    with _one_thread():
        say = print if verbose else (lambda *args, **kwargs: None)
        X_train, y_train, X_test, y_test = _arrays(
            X_train, y_train, X_test, y_test, max_rows, random_state
        )
        population, population_seconds = _population(
            X_train, y_train, n_networks, random_state, say
        )
        sparsities = sorted(float(t) for t in sparsities)
        target_range = None if len(sparsities) == 1 else (sparsities[0], sparsities[-1])
        target = sparsities[len(sparsities) // 2]
        editor = _fit_editor(
            population[:-n_held_out],
            X_train,
            y_train,
            target,
            target_range,
            max_steps,
            random_state,
            say,
        )
        X_t = torch.as_tensor(X_test)

        def accuracy(module):
            with torch.no_grad():
                return float((module(X_t).argmax(dim=1).numpy() == y_test).mean())

        rows = []
        for index, network in enumerate(population[-n_held_out:]):
            module = as_sequential(network)
            weights = extract_weights(module)
            rows.append(
                (
                    "original",
                    0.0,
                    accuracy(module.eval()),
                    weight_sparsity(weights),
                    population_seconds / n_networks,
                    index,
                )
            )
            for sparsity in sparsities:
                started = time.perf_counter()
                pruned = load_weights(module, magnitude_prune_weights(weights, sparsity)).eval()
                prune_seconds = time.perf_counter() - started
                started = time.perf_counter()
                tuned = _fine_tune(
                    load_weights(pruned, extract_weights(pruned)),
                    X_train,
                    y_train,
                    fine_tune_epochs,
                    random_state + index,
                    _schedule(len(X_train))["batch_size"],
                )
                tune_seconds = prune_seconds + time.perf_counter() - started
                started = time.perf_counter()
                (edited,) = editor.transform([network], target=sparsity)
                edit_seconds = time.perf_counter() - started
                for method, net, seconds in (
                    ("magnitude pruning", pruned, prune_seconds),
                    ("magnitude pruning + fine-tuning", tuned, tune_seconds),
                    ("MetanetEditor", edited.module_.eval(), edit_seconds),
                ):
                    rows.append(
                        (
                            method,
                            sparsity,
                            accuracy(net),
                            weight_sparsity(extract_weights(net)),
                            seconds,
                            index,
                        )
                    )
    table = pd.DataFrame(
        rows, columns=["method", "target", "accuracy", "sparsity", "seconds", "network"]
    )
    table = table[["network", "method", "target", "accuracy", "sparsity", "seconds"]]
    table.attrs["editor_fit_seconds"] = float(editor.fit_seconds_)
    return table
