"""The peers the demo and the benchmarks run beside this package, one definition each.

- :func:`fine_tune`: train a network with its zero weights held at zero (after
  magnitude pruning, or after zeroing forbidden input columns);
- :func:`zero_columns`: a network that stops reading some inputs, and nothing else;
- :func:`retrain_on_columns`: a fresh network of the same architecture trained on the
  kept columns only ("retrain without the columns");
- :func:`within_batch_primal_dual`: the online algorithm of Troxell, Roemer and Montúfar
  (ICML 2026, package ``fairness-training``), re-implemented from its description;
- :class:`Float64Proba`: a fitted classifier as fairlearn's ``ThresholdOptimizer``
  needs it under pandas 3.

Global magnitude pruning is the library's own
:func:`~sklearn_metaedit.editing._magnitude.magnitude_prune_weights` (the prior of the
sparsity editor), and is not repeated here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from .._mlp import MLP
from ..editing._graph import extract_weights, load_weights

__all__ = [
    "Float64Proba",
    "fine_tune",
    "retrain_on_columns",
    "within_batch_primal_dual",
    "zero_columns",
]


def _train(module, X, y, epochs, random_state, batch_size, lr, after_step=None) -> None:
    """Adam on the cross-entropy, the rows in a seeded random order each epoch;
    ``after_step()`` after every optimiser step."""
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.int64)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(random_state)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(X_t), generator=generator)
        for start in range(0, len(X_t), batch_size):
            index = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(module(X_t[index]), y_t[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()


def fine_tune(
    module: nn.Sequential,
    X: Any,
    y: Any,
    *,
    epochs: int,
    random_state: int,
    batch_size: int = 256,
    lr: float = 1e-3,
) -> nn.Sequential:
    """Train ``module`` in place for ``epochs`` epochs with its zero weights held at zero.

    Adam on the cross-entropy, the rows in a seeded random order each epoch; after every
    step the linear layers' weights that were zero at the start are set to zero again
    (Adam's momentum would revive them), so the sparsity or the dropped columns stay.

    Parameters
    ----------
    module : nn.Sequential
    X : array-like or Tensor of shape (n_samples, n_features)
    y : array-like or Tensor of shape (n_samples,)
        Class indices.
    epochs : int
    random_state : int
        Seeds the order of the rows.
    batch_size : int, default=256
    lr : float, default=1e-3

    Returns
    -------
    module : nn.Sequential
        The same module, trained, in eval mode.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> module = nn.Sequential(nn.Linear(3, 2))
    >>> with torch.no_grad():
    ...     module[0].weight[:, 0] = 0.0
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> tuned = fine_tune(module, X, y, epochs=2, random_state=0)
    >>> bool((tuned[0].weight[:, 0] == 0).all())
    True
    """
    linears = [layer for layer in module if isinstance(layer, nn.Linear)]
    masks = [(layer.weight != 0).to(layer.weight.dtype) for layer in linears]

    def keep_zeros() -> None:
        with torch.no_grad():
            for layer, mask in zip(linears, masks, strict=True):
                layer.weight.mul_(mask)

    _train(module, X, y, epochs, random_state, batch_size, lr, after_step=keep_zeros)
    return module.eval()


def zero_columns(module: nn.Sequential, columns: Sequence[int]) -> nn.Sequential:
    """A copy of ``module`` whose first layer ignores the input ``columns``.

    Parameters
    ----------
    module : nn.Sequential
    columns : sequence of int
        Input columns whose first-layer weights are set to zero.

    Returns
    -------
    zeroed : nn.Sequential
        A copy; ``module`` is unchanged.

    Examples
    --------
    >>> from torch import nn
    >>> zeroed = zero_columns(nn.Sequential(nn.Linear(3, 2)), [1])
    >>> bool((zeroed[0].weight[:, 1] == 0).all())
    True
    """
    weights = extract_weights(module)
    first = weights[0][0].clone()
    first[:, list(columns)] = 0
    return load_weights(module, [(first, weights[0][1]), *weights[1:]])


def retrain_on_columns(
    hidden_sizes: Sequence[int],
    columns: Sequence[int],
    X: Any,
    y: Any,
    *,
    epochs: int,
    random_state: int,
    batch_size: int = 256,
    lr: float = 3e-3,
    **mlp_params: Any,
) -> nn.Sequential:
    """A fresh :class:`~sklearn_metaedit.MLP` trained on the input ``columns`` only.

    What a user does who may not use the other columns: drop them from the data and
    train the architecture again (Adam, seeded initialisation and row order). The
    network comes back with the full input width, the other columns' weights zero, so
    that it reads the same ``X`` as the network it replaces.

    Parameters
    ----------
    hidden_sizes : sequence of int
        Widths of the hidden layers.
    columns : sequence of int
        The input columns the network may read.
    X : array-like or Tensor of shape (n_samples, n_features)
    y : array-like or Tensor of shape (n_samples,)
    epochs : int
    random_state : int
        Seeds the initialisation and the order of the rows.
    batch_size : int, default=256
    lr : float, default=3e-3
    **mlp_params
        Further parameters of :class:`~sklearn_metaedit.MLP` (``activation``,
        ``dropout``, ``n_classes``), those of the network replaced.

    Returns
    -------
    network : nn.Sequential
        In eval mode, of input width ``n_features``.

    Examples
    --------
    >>> import torch
    >>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> net = retrain_on_columns((8,), [0, 2], X, y, epochs=1, random_state=0)
    >>> net[0].weight.shape, bool((net[0].weight[:, [1, 3]] == 0).all())
    (torch.Size([8, 4]), True)
    """
    X_t = torch.as_tensor(X)
    columns = list(columns)
    hidden_sizes = tuple(hidden_sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        small = MLP(len(columns), hidden_sizes=hidden_sizes, **mlp_params)
    _train(small, X_t[:, columns], y, epochs, random_state, batch_size, lr)
    with torch.random.fork_rng(devices=[]):
        full = MLP(X_t.shape[1], hidden_sizes=hidden_sizes, **mlp_params)
    weights = extract_weights(small)
    first = torch.zeros(weights[0][0].shape[0], X_t.shape[1], dtype=weights[0][0].dtype)
    first[:, columns] = weights[0][0]
    return load_weights(full, [(first, weights[0][1]), *weights[1:]]).eval()


def within_batch_primal_dual(
    scores: np.ndarray,
    codes: np.ndarray,
    *,
    batch_size: int,
    epsilon: float,
    step_size: float = 0.001,
    threshold: float = 0.5,
) -> np.ndarray:
    """Decide a stream batch by batch with one dual driven by the within-batch gap.

    The online algorithm of Troxell, Roemer and Montúfar (ICML 2026, package
    ``fairness-training``), from its description: one dual variable, updated after each
    batch from the parity gap *within* that batch,
    ``lambda <- max(0, lambda + eta0 / sqrt(t) * b * (gap_t - epsilon))``, which raises
    the threshold of the groups selected more than average in the batch and lowers it
    for the others. At batch size 1 a batch holds one group, its gap is 0, and the dual
    never moves.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Probability of the positive class.
    codes : ndarray of shape (n_samples,)
        Integer group codes.
    batch_size : int
        ``b``.
    epsilon : float
        The gap each batch should stay within.
    step_size : float, default=0.001
        ``eta0``. The update scales with the batch size, so larger values overshoot:
        on Adult and synthetic streams 0.01 already flips the groups' order and
        widens the gaps.
    threshold : float, default=0.5
        The decision threshold at a zero dual.

    Returns
    -------
    decisions : ndarray of int64, shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.2, 0.8, 0.3])
    >>> codes = np.array([0, 1, 0, 1])
    >>> within_batch_primal_dual(scores, codes, batch_size=1, epsilon=0.0).tolist()
    [1, 0, 1, 0]
    """
    scores = np.asarray(scores, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    decisions = np.empty(len(scores), dtype=np.int64)
    dual = 0.0
    for t, start in enumerate(range(0, len(scores), batch_size), start=1):
        p, g = scores[start : start + batch_size], codes[start : start + batch_size]
        counts = np.bincount(g, minlength=n_groups)
        present = counts > 0
        # Direction of the gap's gradient: the groups the model selects more than average.
        plain = np.bincount(g, weights=(p >= threshold), minlength=n_groups)
        rates = np.divide(plain, counts, out=np.zeros(n_groups), where=present)
        mean = rates[present].mean()
        direction = np.sign(rates - mean)
        d = (p - dual * direction[g] >= threshold).astype(np.int64)
        decisions[start : start + batch_size] = d
        chosen = np.bincount(g, weights=d, minlength=n_groups)
        batch_rates = (chosen / np.maximum(counts, 1))[present]
        gap = batch_rates.max() - batch_rates.min() if present.sum() >= 2 else 0.0
        dual = max(0.0, dual + step_size / np.sqrt(t) * len(p) * (gap - epsilon))
    return decisions


class Float64Proba(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose ``predict_proba`` returns float64.

    fairlearn's ThresholdOptimizer writes float64 values into a Series built from the
    estimator's probabilities, which pandas >= 3 refuses for a float32 Series (what skorch
    returns).

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba``
        Returned as it is by ``predict``; ``fit`` does nothing (use it with
        ``prefit=True``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1])
    >>> Float64Proba(LogisticRegression().fit(X, y)).predict_proba(X).dtype
    dtype('float64')
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
