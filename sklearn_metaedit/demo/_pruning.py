"""One-shot pruning peers from calibration rows: Wanda, SparseGPT and exact OBC.

The pruners a specialist would set beside a learned editor. Each reads calibration rows
(task inputs), prunes the network layer after layer, and feeds the next layer the
*pruned* network's activations, as the papers do:

- **Wanda** (Sun et al., "A Simple and Effective Pruning Approach for Large Language
  Models", ICLR 2024): score ``|w_ij| * ||a_j||`` (the norm of input ``j`` over the
  calibration rows), the lowest scores of each output row zeroed; no weight update.
- **SparseGPT** (Frantar and Alistarh, "SparseGPT: Massive Language Models Can Be
  Accurately Pruned in One-Shot", ICML 2023): the column-by-column optimal-brain-surgeon
  update with the inverse Hessian's Cholesky factor, the mask chosen adaptively in blocks
  of columns by ``w^2 / [H^-1]_cc^2``.
- **OBC** (Frantar and Alistarh, "Optimal Brain Compression", NeurIPS 2022): exact greedy
  optimal-brain-surgeon removal, one weight at a time for every row, the inverse Hessian
  updated after each removal; the rows' removal counts are chosen together, by the
  smallest loss increments of the whole layer.

The OBS pruners start from the least-squares weights that map the pruned network's
inputs (with a constant column for the bias) to the original layer's outputs (the
layer's own weights for the first layer, whose input pruning does not change), and the
bias is never pruned but compensates. ``H = A^T A`` is damped by 1% of its mean
diagonal. Layer rates are either uniform (every layer at the target) or those of global
magnitude pruning at the target; the total number of zero weights is
``ceil(target * n_weights)`` either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..editing._graph import extract_weights, load_weights
from ..editing._magnitude import magnitude_prune_weights, n_to_zero

__all__ = ["layer_rates", "obc_prune", "obs_remove_columns", "sparsegpt_prune", "wanda_prune"]

#: Damping of ``H = A^T A``: this fraction of its mean diagonal is added to the diagonal.
_DAMP = 0.01
#: Ridge of the least-squares start, relative to the mean diagonal of ``A^T A``.
_RIDGE = 1e-3
#: SparseGPT's block of columns (mask selection and lazy updates).
_BLOCK = 128


def _proportional(n_zero: int, sizes: list[int]) -> list[int]:
    """``n_zero`` spread over parts in proportion to their sizes (largest remainders)."""
    total = sum(sizes)
    exact = [n_zero * s / total for s in sizes]
    counts = [math.floor(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: counts[i] - exact[i])[: n_zero - sum(counts)]:
        counts[i] += 1
    return counts


def layer_rates(module: nn.Sequential, target: float, *, uniform: bool) -> list[int]:
    """Number of weights to zero in each linear layer, ``ceil(target * n_weights)`` in all.

    Parameters
    ----------
    module : nn.Sequential
    target : float
        Fraction of the weights to zero.
    uniform : bool
        True: each layer at ``target`` (rounded by largest remainders); False: the
        counts global magnitude pruning at ``target`` gives.

    Returns
    -------
    counts : list of int
        One per linear layer, in order.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    >>> layer_rates(net, 0.5, uniform=True)
    [50, 10]
    """
    weights = extract_weights(module)
    if not uniform:
        pruned = magnitude_prune_weights(weights, target)
        return [int((w == 0).sum()) for w, _ in pruned]
    sizes = [w.numel() for w, _ in weights]
    return _proportional(n_to_zero(sum(sizes), target), sizes)


def _input_of(module: nn.Sequential, index: int, X: torch.Tensor) -> torch.Tensor:
    """The input of ``module[index]`` when ``module`` reads ``X``."""
    a = X
    for layer in list(module)[:index]:
        a = layer(a)
    return a


def _prune_layers(
    module: nn.Sequential,
    X: Any,
    counts: list[int],
    solve: Callable[[torch.Tensor, torch.Tensor, nn.Linear, int], tuple],
) -> nn.Sequential:
    """A copy of ``module`` pruned layer after layer by ``solve(A_pruned, A_original,
    layer, n_zero) -> (weight, bias)``, in float64: each layer reads the activations of
    the network pruned so far."""
    original = load_weights(module, extract_weights(module)).double().eval()
    pruned = load_weights(module, extract_weights(module)).double().eval()
    X = torch.as_tensor(X, dtype=torch.float64)
    linear = [i for i, layer in enumerate(module) if isinstance(layer, nn.Linear)]
    with torch.no_grad():
        for index, n_zero in zip(linear, counts, strict=True):
            a_pruned = _input_of(pruned, index, X)
            a_original = _input_of(original, index, X)
            weight, bias = solve(a_pruned, a_original, original[index], n_zero)
            pruned[index].weight.copy_(weight)
            pruned[index].bias.copy_(bias)
    return pruned.to(next(module.parameters()).dtype)


def _least_squares(a_pruned, a_original, layer):
    """``H`` (damped) of ``A = [A_pruned, 1]``, and the weights ``(out, in + 1)`` from
    which the pruning starts: the layer's own where its input is unchanged (the first
    layer), else those that best map ``A`` to the original layer's outputs."""
    ones = torch.ones(len(a_pruned), 1, dtype=a_pruned.dtype)
    A = torch.cat([a_pruned, ones], dim=1)
    gram = A.T @ A
    eye = torch.eye(len(gram), dtype=gram.dtype)
    W = torch.cat([layer.weight, layer.bias[:, None]], dim=1)
    if not torch.equal(a_pruned, a_original):
        # a ridge-stabilised least-squares fit: without it, directions the rows hardly
        # span (dead or nearly collinear units) take large cancelling weights that
        # pruning then breaks (6 held-out Adult MLPs at 95%, SparseGPT with magnitude
        # rates: 0.811 with a ridge of 1e-3 relative to the mean diagonal, 0.812 with
        # 1e-2, 0.794 with 1e-4, 0.686 with 1e-8)
        target = a_original @ layer.weight.T + layer.bias
        ridge = _RIDGE * gram.diagonal().mean() * eye
        W = torch.linalg.solve(gram + ridge, A.T @ target).T
    return gram + _DAMP * gram.diagonal().mean() * eye, W


# ---------------------------------------------------------------------------- Wanda


def wanda_prune(
    module: nn.Sequential, X: Any, target: float, *, uniform: bool = True
) -> nn.Sequential:
    """Wanda: zero the weights of lowest ``|w_ij| * ||a_j||`` in each output row.

    Parameters
    ----------
    module : nn.Sequential
    X : array-like of shape (n_rows, n_features)
        Calibration rows.
    target : float
        Fraction of weights to zero.
    uniform : bool, default=True
        Layer rates (see :func:`layer_rates`).

    Returns
    -------
    pruned : nn.Sequential
        A copy; ``module`` is unchanged.
    """

    def solve(a_pruned, a_original, layer, n_zero):
        score = layer.weight.abs() * a_pruned.norm(dim=0)[None, :]
        rows = score.shape[0]
        per_row = [n_zero // rows + (1 if r < n_zero % rows else 0) for r in range(rows)]
        weight = layer.weight.clone()
        order = torch.argsort(score, dim=1)
        for r, k in enumerate(per_row):
            weight[r, order[r, :k]] = 0.0
        return weight, layer.bias

    return _prune_layers(module, X, layer_rates(module, target, uniform=uniform), solve)


# ---------------------------------------------------------------------------- SparseGPT


def sparsegpt_prune(
    module: nn.Sequential, X: Any, target: float, *, uniform: bool = True
) -> nn.Sequential:
    """SparseGPT: the blocked optimal-brain-surgeon update, mask chosen by block.

    Parameters
    ----------
    module : nn.Sequential
    X : array-like of shape (n_rows, n_features)
        Calibration rows.
    target : float
        Fraction of weights to zero.
    uniform : bool, default=True
        Layer rates (see :func:`layer_rates`).

    Returns
    -------
    pruned : nn.Sequential
        A copy; ``module`` is unchanged.
    """

    def solve(a_pruned, a_original, layer, n_zero):
        H, W = _least_squares(a_pruned, a_original, layer)
        n_in = W.shape[1] - 1
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
        W = W.clone()
        mask = torch.ones_like(W, dtype=torch.bool)
        starts = list(range(0, n_in, _BLOCK))
        sizes = [min(_BLOCK, n_in - s) * W.shape[0] for s in starts]
        for start, k in zip(starts, _proportional(n_zero, sizes), strict=True):
            stop = min(start + _BLOCK, n_in)
            score = W[:, start:stop] ** 2 / Hinv.diagonal()[start:stop][None, :] ** 2
            flat = torch.argsort(score.reshape(-1))[:k]
            block = torch.ones(score.numel(), dtype=torch.bool)
            block[flat] = False
            mask[:, start:stop] = block.reshape(score.shape)
            errors = torch.zeros(W.shape[0], stop - start, dtype=W.dtype)
            for j in range(start, stop):
                error = W[:, j] / Hinv[j, j] * (~mask[:, j])
                W[:, j:stop] -= error[:, None] * Hinv[j, j:stop][None, :]
                errors[:, j - start] = error
            W[:, stop:] -= errors @ Hinv[start:stop, stop:]
        W = W * mask
        return W[:, :n_in], W[:, n_in]

    return _prune_layers(module, X, layer_rates(module, target, uniform=uniform), solve)


# ---------------------------------------------------------------------------- OBC


def obc_prune(
    module: nn.Sequential, X: Any, target: float, *, uniform: bool = True
) -> nn.Sequential:
    """Exact OBC: greedy optimal-brain-surgeon removal per row, counts chosen per layer.

    Parameters
    ----------
    module : nn.Sequential
    X : array-like of shape (n_rows, n_features)
        Calibration rows.
    target : float
        Fraction of weights to zero.
    uniform : bool, default=True
        Layer rates (see :func:`layer_rates`).

    Returns
    -------
    pruned : nn.Sequential
        A copy; ``module`` is unchanged.

    Examples
    --------
    >>> import torch
    >>> from sklearn_metaedit import MLP
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = MLP(6, hidden_sizes=(8,))
    >>> pruned = obc_prune(net, torch.randn(256, 6), 0.75)
    >>> sum(int((p == 0).sum()) for p in (pruned[0].weight, pruned[2].weight))
    48
    """

    def solve(a_pruned, a_original, layer, n_zero):
        H, W = _least_squares(a_pruned, a_original, layer)
        rows, n_cols = W.shape
        n_in = n_cols - 1
        Hinv = torch.linalg.inv(H).expand(rows, n_cols, n_cols).clone()
        w = W.clone()
        removed = torch.zeros(rows, n_cols, dtype=torch.bool)
        removed_bias = removed.clone()
        removed_bias[:, n_in] = True
        losses = torch.empty(rows, n_in, dtype=W.dtype)
        order = torch.empty(rows, n_in, dtype=torch.long)
        arange = torch.arange(rows)
        for step in range(n_in):
            d = Hinv.diagonal(dim1=1, dim2=2)
            score = w**2 / d
            score[removed | removed_bias] = math.inf
            q = score.argmin(dim=1)
            losses[:, step] = score[arange, q] / 2
            order[:, step] = q
            column = Hinv[arange, :, q]  # (rows, n_cols)
            w = w - (w[arange, q] / d[arange, q])[:, None] * column
            Hinv = (
                Hinv
                - column[:, :, None] * Hinv[arange, q, :][:, None, :] / d[arange, q][:, None, None]
            )
            w[arange, q] = 0.0
            removed[arange, q] = True
        # the removals of the whole layer with the smallest loss increments, each row's a
        # prefix of its greedy path (increments made nondecreasing along the path)
        monotone = torch.cummax(losses, dim=1).values
        chosen = torch.zeros(rows * n_in, dtype=torch.bool)
        chosen[torch.argsort(monotone.reshape(-1), stable=True)[:n_zero]] = True
        n_row = chosen.reshape(rows, n_in).sum(dim=1)
        out = torch.empty_like(W)
        for r in range(rows):
            drop = order[r, : n_row[r]]
            keep = torch.ones(n_cols, dtype=torch.bool)
            keep[drop] = False
            out[r] = 0.0
            if len(drop):
                # the exact optimum for this set: w_K + H_KK^-1 H_KD w_D
                shift = torch.linalg.solve(H[keep][:, keep], H[keep][:, drop] @ W[r, drop])
                out[r, keep] = W[r, keep] + shift
            else:
                out[r] = W[r]
        return out[:, :n_in], out[:, n_in]

    return _prune_layers(module, X, layer_rates(module, target, uniform=uniform), solve)


# ---------------------------------------------------------------- column removal


def obs_remove_columns(module: nn.Sequential, X: Any, columns: Sequence[int]) -> nn.Sequential:
    """Optimal-brain-surgeon removal of whole input columns, from calibration rows.

    The first layer's weights on ``columns`` are removed together and the others updated
    by the group OBS step, ``w_K <- w_K + w_D H_DK H_KK^-1``, with ``H = A^T A`` of the
    calibration rows and a constant column (the bias compensates too), damped by 1% of its
    mean diagonal: the update that keeps the layer's outputs closest, in least squares on
    the rows, to the original's (Hassibi and Stork, "Second order derivatives for network
    pruning: Optimal Brain Surgeon", NIPS 1992, for a group of weights; Kurtic et al.,
    "The Optimal BERT Surgeon", EMNLP 2022, for structured groups). The later layers are
    unchanged: the first layer's outputs are reconstructed on the rows already.

    Parameters
    ----------
    module : nn.Sequential
    X : array-like of shape (n_rows, n_features)
        Calibration rows.
    columns : sequence of int
        Input columns the network may no longer read.

    Returns
    -------
    edited : nn.Sequential
        A copy; ``module`` is unchanged.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> X = torch.randn(500, 3)
    >>> X = torch.cat([X, X[:, :1] + 0.01 * torch.randn(500, 1)], dim=1)  # 3 copies 0
    >>> net = nn.Sequential(nn.Linear(4, 1))
    >>> edited = obs_remove_columns(net, X, [3])
    >>> bool((edited[0].weight[:, 3] == 0).all())
    True
    >>> bool(torch.allclose(edited(X), net(X), atol=0.05))
    True
    """
    weights = extract_weights(module)
    weight, bias = (t.double() for t in weights[0])
    X = torch.as_tensor(X, dtype=torch.float64)
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
    H = A.T @ A
    H = H + _DAMP * H.diagonal().mean() * torch.eye(len(H), dtype=H.dtype)
    drop = sorted(set(int(c) for c in columns))
    keep = [j for j in range(len(H)) if j not in drop]
    W = torch.cat([weight, bias[:, None]], dim=1)
    shift = torch.linalg.solve(H[keep][:, keep], H[keep][:, drop] @ W[:, drop].T).T
    out = torch.zeros_like(W)
    out[:, keep] = W[:, keep] + shift
    first = (out[:, :-1].to(weights[0][0].dtype), out[:, -1].to(weights[0][1].dtype))
    return load_weights(module, [first, *weights[1:]])
