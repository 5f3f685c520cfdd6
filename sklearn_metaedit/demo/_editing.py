"""The editor's part of the demo: prune held-out networks, and make them stop reading
forbidden input columns, beside the baselines."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._mlp import MLP
from ..editing import MetanetEditor, TaskData, make_population
from ..editing._graph import as_sequential, extract_weights, load_weights
from ..editing._magnitude import magnitude_prune_weights
from ..editing._measures import features_used, weight_sparsity
from ._baselines import fine_tune, retrain_on_columns, zero_columns
from ._tasks import training_schedule

__all__ = ["run_editor_demo", "run_editor_sweep", "run_minimisation_comparison"]


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


# the population's optimiser settings; retraining a network from scratch uses them too
_LEARNING_RATE = 3e-3


def _population(X_train, y_train, n_networks, random_state, say):
    from skorch import NeuralNetClassifier

    estimator = NeuralNetClassifier(
        MLP,
        module__n_features=X_train.shape[1],
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=_LEARNING_RATE,
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


# a small metanetwork: the demo trains it in seconds on a CPU
_SMALL_METANET = {
    "hidden_channels": 16,
    "mlp_hidden": 32,
    "num_layers": 2,
    "networks_per_step": 4,
    "rows_per_step": 256,
    "learning_rate": 1e-3,
    "temperature": 0.3,
}


def _fit_editor(networks, X_train, y_train, target, target_range, max_steps, random_state, say):
    editor = MetanetEditor(
        "sparsity",
        target=target,
        target_range=target_range,
        max_steps=max_steps,
        random_state=random_state,
        **_SMALL_METANET,
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


def _accuracy(module, X_t, y) -> float:
    with torch.no_grad():
        return float((module(X_t).argmax(dim=1).numpy() == y).mean())


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
        editor's training time is in ``table.attrs["editor_fit_seconds"]``, the fine-tuning
        epochs in ``table.attrs["fine_tune_epochs"]``.

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
            return _accuracy(module, X_t, y_test)

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
                tuned = fine_tune(
                    load_weights(pruned, extract_weights(pruned)),
                    X_train,
                    y_train,
                    epochs=fine_tune_epochs,
                    random_state=random_state + index,
                    batch_size=_schedule(len(X_train))["batch_size"],
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
    table.attrs["fine_tune_epochs"] = fine_tune_epochs
    return table


_ORIGINAL = "original"
_ZEROED = "zero the columns"
_ZEROED_TUNED = "zero the columns + fine-tuning"
_RETRAINED = "retrain without the columns"
_EDITOR = "MetanetEditor"


def _column_indices(features, feature_names, n_features) -> tuple[list[int], list[str]]:
    """Sorted indices of ``features`` (names or indices), and the names of every column."""
    if feature_names is None:
        names = [f"x{i}" for i in range(n_features)]
    else:
        names = [str(name) for name in feature_names]
        if len(names) != n_features:
            raise ValueError(
                f"feature_names holds {len(names)} names but X_train has {n_features} "
                "columns; pass one name per column."
            )
    items = [features] if isinstance(features, str | Integral) else list(features)
    indices = set()
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(
                    f"forbidden_features names {item!r}, which is not in feature_names; "
                    "pass column names of feature_names or integer indices."
                )
            indices.add(names.index(item))
        elif isinstance(item, Integral) and not isinstance(item, bool) and 0 <= item < n_features:
            indices.add(int(item))
        else:
            raise ValueError(
                f"forbidden_features must hold column names or indices in [0, {n_features}), "
                f"got {item!r}."
            )
    if not indices:
        raise ValueError(
            "forbidden_features is empty: name at least one column the networks may not use."
        )
    return sorted(indices), names


def _hidden_sizes(module) -> tuple[int, ...]:
    """Widths of the hidden layers of an MLP."""
    linears = [layer for layer in module if isinstance(layer, torch.nn.Linear)]
    return tuple(layer.out_features for layer in linears[:-1])


def run_minimisation_comparison(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    forbidden_features: Sequence[int | str],
    feature_names: Sequence[str] | None = None,
    n_networks: int = 10,
    n_held_out: int = 3,
    fine_tune_epochs: int = 1,
    max_rows: int = 10_000,
    max_steps: int = 200,
    random_state: int = 0,
    verbose: int = 1,
    return_networks: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, list[torch.nn.Sequential]]]:
    """Make held-out networks stop reading forbidden input columns, four ways.

    The population is the one :func:`run_editor_sweep` builds from the same arguments
    (the same training rows and seed give the same networks), and its last
    ``n_held_out`` networks are held out again. The rest train a
    ``MetanetEditor("data_minimisation", features=forbidden_features)``. Every
    held-out network is then made blind to the forbidden columns by zeroing their
    first-layer weights, by zeroing them and training ``fine_tune_epochs`` with them
    held at zero, by training its architecture afresh on the other columns only
    (:func:`~sklearn_metaedit.demo.retrain_on_columns`, with the population's batches,
    epochs and learning rate), and by the editor.

    Parameters
    ----------
    X_train, X_test : array-like of shape (n_samples, n_features)
        Numeric (preprocessed) features.
    y_train, y_test : array-like of shape (n_samples,)
        Labels.
    forbidden_features : sequence of int or str
        The input columns the networks may not read, as indices or as names of
        ``feature_names``.
    feature_names : sequence of str, default=None
        Names of the columns of ``X_train`` ("x0", "x1", ... if None).
    n_networks : int, default=10
        Population size, held-out networks included.
    n_held_out : int, default=3
        Networks edited (never seen by the editor in training).
    fine_tune_epochs : int, default=1
        Epochs of training after zeroing the columns (in the population's batches).
    max_rows : int, default=10_000
        Training rows used (a random subset), as in :func:`run_editor_sweep`.
    max_steps : int, default=200
        Training steps of the metanetwork.
    random_state : int, default=0
    verbose : int, default=1
        Print what is being done.
    return_networks : bool, default=False
        Also return the networks each method produced.

    Returns
    -------
    table : pandas.DataFrame
        One row per held-out network and method; columns ``network`` (0 to
        ``n_held_out - 1``), ``method`` ("original", "zero the columns", "zero the
        columns + fine-tuning", "retrain without the columns", "MetanetEditor"),
        ``accuracy`` (test split), ``forbidden_columns_used`` (forbidden columns whose
        first-layer weights are not all zero in that network) and ``seconds`` (time to
        produce that network; for the original, its share of training the
        population). ``table.attrs`` holds ``"forbidden_features"`` (their names) and
        ``"editor_fit_seconds"``.
    networks : dict of str to list of torch.nn.Sequential
        Only if ``return_networks``: per method, its network for each held-out network,
        in the order of ``network``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(600, 8, random_state=0)
    >>> X = X.astype(np.float32)
    >>> table = run_minimisation_comparison(X[:400], y[:400], X[400:], y[400:],
    ...                                     forbidden_features=[0, 3], n_networks=4,
    ...                                     n_held_out=1, max_steps=5, verbose=0)
    >>> table.groupby("method", sort=False)["forbidden_columns_used"].max().to_dict()
    {'original': 2, 'zero the columns': 0, 'zero the columns + fine-tuning': 0, \
'retrain without the columns': 0, 'MetanetEditor': 0}
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
        forbidden, names = _column_indices(forbidden_features, feature_names, X_train.shape[1])
        population, population_seconds = _population(
            X_train, y_train, n_networks, random_state, say
        )
        editor = MetanetEditor(
            "data_minimisation",
            features=forbidden,
            max_steps=max_steps,
            random_state=random_state,
            **_SMALL_METANET,
        ).fit(population[:-n_held_out], data=TaskData(X_train, y_train))
        say(
            f"  fitted a data-minimisation editor ({len(forbidden)} forbidden "
            f"column{'s' if len(forbidden) != 1 else ''}) on {n_networks - n_held_out} "
            f"networks in {editor.fit_seconds_:.1f}s"
        )
        schedule = _schedule(len(X_train))
        allowed = [j for j in range(X_train.shape[1]) if j not in set(forbidden)]
        X_t = torch.as_tensor(X_test)
        rows = []
        networks = {m: [] for m in (_ORIGINAL, _ZEROED, _ZEROED_TUNED, _RETRAINED, _EDITOR)}
        for index, network in enumerate(population[-n_held_out:]):
            module = as_sequential(network).eval()
            seed = random_state + index

            started = time.perf_counter()
            zeroed = zero_columns(module, forbidden).eval()
            zero_seconds = time.perf_counter() - started
            started = time.perf_counter()
            tuned = fine_tune(
                zero_columns(module, forbidden),
                X_train,
                y_train,
                epochs=fine_tune_epochs,
                random_state=seed,
                batch_size=schedule["batch_size"],
            )
            tune_seconds = zero_seconds + time.perf_counter() - started
            started = time.perf_counter()
            retrained = retrain_on_columns(
                _hidden_sizes(module),
                allowed,
                X_train,
                y_train,
                epochs=schedule["max_epochs"],
                random_state=seed,
                batch_size=schedule["batch_size"],
                lr=_LEARNING_RATE,
            )
            retrain_seconds = time.perf_counter() - started
            started = time.perf_counter()
            (edited,) = editor.transform([network])
            edit_seconds = time.perf_counter() - started

            for method, net, seconds in (
                (_ORIGINAL, module, population_seconds / n_networks),
                (_ZEROED, zeroed, zero_seconds),
                (_ZEROED_TUNED, tuned, tune_seconds),
                (_RETRAINED, retrained, retrain_seconds),
                (_EDITOR, edited.module_.eval(), edit_seconds),
            ):
                used = set(features_used(extract_weights(net))) & set(forbidden)
                rows.append((index, method, _accuracy(net, X_t, y_test), len(used), seconds))
                networks[method].append(net)
    table = pd.DataFrame(
        rows, columns=["network", "method", "accuracy", "forbidden_columns_used", "seconds"]
    )
    table.attrs["forbidden_features"] = [names[i] for i in forbidden]
    table.attrs["editor_fit_seconds"] = float(editor.fit_seconds_)
    table.attrs["fine_tune_epochs"] = fine_tune_epochs
    return (table, networks) if return_networks else table
