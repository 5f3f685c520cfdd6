"""Ridge least squares for every output unit of a layer at once, each over its own inputs.

A pruned layer's units keep different inputs; refitting them (the reconstruction step of
one-shot pruners, and the compensation of dropped input features) solves one small
system per unit. :func:`refit_units` solves them all in one batched call (one system where
they keep the same inputs), and gives the diagonal of each inverse system that
optimal-brain-surgeon saliencies divide by.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DAMPING",
    "refit_units",
    "remove_least_salient",
    "ridge_problem",
    "second_moments",
    "unit_systems",
]

# ridge of the least-squares refit, relative to the mean input second moment: 1% keeps
# the solve stable where kept inputs are nearly collinear (Adult's one-hot groups)
DAMPING = 1e-2


def second_moments(inputs: torch.Tensor) -> torch.Tensor:
    """``[inputs, 1]^T [inputs, 1] / n``: the Gram matrix of a layer's inputs and a
    constant (the bias's input) over ``n`` rows, the system of its least squares."""
    inputs_and_one = torch.cat([inputs, inputs.new_ones(len(inputs), 1)], 1)
    return inputs_and_one.T @ inputs_and_one / len(inputs)


def unit_systems(gram, penalty, kept):
    """Each output unit's ridge system over its kept inputs alone, padded to the largest.

    Returns ``(index, valid, systems)``: ``index`` (n_units, width) the kept inputs first,
    ``valid`` (n_units, width) 1 where an entry is kept, ``systems`` (n_units, width,
    width) ``gram`` restricted to them plus ``diag(penalty)``; the padding is the
    identity, so that its solution is 0. At 90% sparsity a unit's system is a tenth of
    the layer's where the kept weights are spread evenly.
    """
    width = int(kept.sum(dim=1).max())
    index = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = kept.gather(1, index).to(gram.dtype)
    if gram.shape[1] <= 5 * width:  # rows, then columns: fewer index computations
        rows = gram.index_select(0, index.reshape(-1)).reshape(*index.shape, -1)
        systems = rows.gather(2, index[:, None, :].expand(-1, width, -1))
    else:  # the rows in full would be many times the systems (a wide, sparse layer)
        systems = gram[index[:, :, None], index[:, None, :]]
    systems = systems * (valid[:, :, None] * valid[:, None, :])  # 0/1: exact either way
    systems.diagonal(dim1=1, dim2=2).add_(penalty[index] * valid + (1.0 - valid))
    return index, valid, systems


def refit_units(gram, rhs, penalty, kept, *, inverse_diagonal=False):
    """The least-squares weights of every unit over its kept inputs (n_units, n_inputs),
    zero elsewhere; with ``inverse_diagonal``, also the diagonal of each unit's inverse
    system (inf where an input is not kept), the denominator of the optimal-brain-surgeon
    saliency. Where every unit keeps the same inputs they share one system, solved once.

    Unit ``i``'s weights ``w`` over its kept inputs ``K_i`` solve
    ``(gram_KK + diag(penalty_K)) w_K = rhs_iK``: with ``gram`` the inputs' second
    moments and ``rhs`` their cross-moments with the targets plus ``penalty * w0``, the
    ridge least squares pulled towards ``w0``.

    Parameters
    ----------
    gram : Tensor of shape (n_inputs, n_inputs)
    rhs : Tensor of shape (n_units, n_inputs)
    penalty : Tensor of shape (n_inputs,)
    kept : bool Tensor of shape (n_units, n_inputs)
    inverse_diagonal : bool, default=False

    Returns
    -------
    solution : Tensor of shape (n_units, n_inputs)
    diagonal : Tensor of shape (n_units, n_inputs)
        Only with ``inverse_diagonal``.

    Examples
    --------
    >>> import torch
    >>> gram = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> kept = torch.tensor([[True, True], [True, False]])
    >>> refit_units(gram, torch.ones(2, 2, dtype=torch.float64), torch.zeros(2), kept)
    tensor([[0.3333, 0.3333],
            [0.5000, 0.0000]], dtype=torch.float64)
    """
    if bool(kept[0].any()) and bool((kept == kept[:1]).all()):
        # every unit keeps the same inputs (a dense layer, or one whose dropped input
        # columns are its only zeros): one system
        shared = kept[0].nonzero().flatten()
        system = gram[shared[:, None], shared[None, :]] + torch.diag(penalty[shared])
        factor, info = torch.linalg.cholesky_ex(system)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor)
            solution = torch.zeros_like(rhs)
            solution[:, shared] = rhs[:, shared] @ inverse
            if not inverse_diagonal:
                return solution
            diagonal = torch.full_like(rhs, math.inf)
            diagonal[:, shared] = inverse.diagonal().to(rhs.dtype)
            return solution, diagonal
    index, valid, systems = unit_systems(gram, penalty, kept)
    right = (rhs.gather(1, index) * valid).unsqueeze(-1)
    factor, info = torch.linalg.cholesky_ex(systems)
    if bool((info != 0).any()):  # not positive definite: an LU solve
        inverse = torch.linalg.inv(systems)
    else:
        inverse = torch.cholesky_inverse(factor) if inverse_diagonal else None
    if inverse is None:
        reduced = torch.cholesky_solve(right, factor).squeeze(-1) * valid
    else:
        reduced = (inverse @ right).squeeze(-1) * valid
    solution = torch.zeros_like(rhs).scatter_(1, index, reduced)
    if not inverse_diagonal:
        return solution
    diagonal = torch.where(
        valid > 0, inverse.diagonal(dim1=1, dim2=2), torch.full_like(reduced, math.inf)
    )
    return solution, torch.full_like(rhs, math.inf).scatter_(1, index, diagonal)


def ridge_problem(gram, inputs, target, pull, damping: float = DAMPING):
    """A layer's ridge least squares over ``inputs``: ``(rhs, penalty)`` for
    :func:`refit_units`.

    Each output unit's weights and bias minimise ``mean((a @ w + c - t) ** 2) + lambda *
    |w - w0| ** 2``: ``rhs`` is ``[inputs, 1]^T target / n + penalty * [w0, 0]`` and
    ``penalty`` is ``lambda`` on every input (``damping`` times the mean second moment of
    the inputs in ``gram``, :func:`second_moments`'s) and 0 on the bias.
    """
    penalty = torch.full((gram.shape[0],), damping * float(gram.diagonal()[:-1].mean()))
    penalty = (penalty + 1e-12).to(gram.dtype)
    penalty[-1] = 0.0  # none on the bias
    pull = torch.cat([pull, pull.new_zeros(len(pull), 1)], 1)
    inputs = torch.cat([inputs, inputs.new_ones(len(inputs), 1)], 1)
    return target.T @ inputs / len(inputs) + penalty * pull, penalty


def remove_least_salient(solution, diagonal, kept, n_remove: int, shift=None):
    """``kept`` less the ``n_remove`` kept weights of lowest optimal-brain-surgeon saliency.

    The saliency of weight ``j`` of a unit is ``log(w_j ** 2 / [S^-1]_jj) + shift_j``
    (:func:`refit_units`'s solution and inverse diagonal, with ``inverse_diagonal``): the
    increase of the layer's squared error that removing it alone would cause once the
    unit's other weights are refitted, ranked over the whole layer. The last column of
    ``kept`` (the bias) is never removed; a new mask is returned.
    """
    saliency = torch.log(solution[:, :-1].double() ** 2 / diagonal[:, :-1] + 1e-300)
    if shift is not None:
        saliency = saliency + shift
    saliency = torch.where(kept[:, :-1], saliency, math.inf)
    removed = torch.topk(saliency.reshape(-1), n_remove, largest=False).indices
    flat = kept[:, :-1].reshape(-1).clone()
    flat[removed] = False
    out = kept.clone()
    out[:, :-1] = flat.reshape(saliency.shape)
    return out
