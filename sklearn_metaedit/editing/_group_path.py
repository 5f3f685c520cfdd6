"""A group-score path: the parity edit of a network with free hidden units.

A group-blind network meets a parity gap best by lowering its logit margin where the
group it favours is likely: ``margin(x) - lam * s(x)``, with ``s`` a linear score of the
group from the columns the network reads. A dense network has no room for ``s``: it
passes through units that carry other functions. A pruned one does: some of its hidden
units are read by no later layer, or read nothing (a constant), and a chain of one such
unit per hidden layer carries ``s`` to the logits unchanged, where each activation is
the identity on positive inputs and the score is kept positive on the rows.

On the editor benchmark's 12 held-out Adult networks pruned to 0.9 by its sparsity
editor (seed 0), every network had such a unit in both hidden layers. A parity editor
after it (the sex columns dropped with their compensation, calibrated on 22,561
validation rows to the gap bound 0.05) reached 0.8363 test accuracy with the path, every
test gap within 0.05, against 0.8056 with its residuals on the weights pruning left
alone (0.8370 after the sparsity editor's checkpoint came to be tested for its gain).
The rule "margin minus lam times a logistic score of sex", with lam and the threshold
chosen per network on the validation rows, reached 0.8354 on the same networks;
written into the last hidden layer's outputs by least squares, 0.8025: the units
pruning leaves do not carry the score.

The score is fitted at edit time, on the calibration rows (at most :data:`_FIT_ROWS` of
them, evenly spaced): a least-squares fit of the membership of the second group on the
columns the path may read, refitted on the :data:`_PATH_COLUMNS` of them whose
coefficients times standard deviations are largest (the path's first unit reads those
alone). The rows are read and not kept.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._graph import extract_weights, layer_inputs, network_forward

__all__ = ["carries_path", "free_units", "group_path_line"]

#: The columns the path's first unit reads. On the 12 pruned Adult networks above (the
#: score fitted on the training rows' covariance, from every column but sex's, the sex
#: columns zeroed), 5, 10, 20 and 40 columns reached 0.8368, 0.8372, 0.8374 and 0.8369
#: with the strength and threshold chosen per network on the validation rows.
_PATH_COLUMNS = 10

#: The calibration rows the score is fitted on, at most (every k-th row).
_FIT_ROWS = 2048

#: The margin's change at strength 1, in standard deviations of the network's logit
#: margin on the rows, per standard deviation of the score: a calibration's strengths
#: in [0, 6] lower the margin by up to one of its standard deviations per one of the
#: score's. On the 12 pruned Adult networks the gap met 0.05 near a third of a
#: standard deviation.
_UNIT = 1 / 6

#: Activations that are the identity on positive inputs (dropout is inactive in an
#: edited network).
_POSITIVE_IDENTITY = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Dropout, nn.Identity)

#: The path's first unit is kept positive on the calibration rows by this many of its
#: standard deviations below their least score.
_FLOOR = 0.1


class _Path(NamedTuple):
    """A group score and the free hidden units that carry it."""

    columns: torch.Tensor  # the input columns the first unit reads
    coef: torch.Tensor  # their weights (the score has standard deviation 1 on the rows)
    bias: float  # the first unit's bias: its input is positive on the rows
    units: list[int]  # the free unit of each hidden layer
    center: float  # the mean of the first unit's output on the rows
    step: float  # the logit's weight at strength 1, signed (:data:`_UNIT`)


def free_units(weights) -> list[int] | None:
    """The first free unit of each hidden layer of ``weights``: one that no later layer
    reads (its outgoing weights are zero) or that reads nothing (a constant on every
    row); None where a layer has none.

    Examples
    --------
    >>> import torch
    >>> w1 = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    >>> w2 = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    >>> free_units([(w1, torch.zeros(2)), (w2, torch.zeros(2))])
    [1]
    """
    units = []
    for layer in range(len(weights) - 1):
        w_in, w_out = weights[layer][0], weights[layer + 1][0]
        free = ((w_out == 0).all(0) | (w_in == 0).all(1)).nonzero().flatten()
        if not len(free):
            return None
        units.append(int(free[0]))
    return units


def _carries_path(module, weights) -> bool:
    """Whether ``module`` is a binary classifier whose decision is its logit margin and
    whose element-wise layers between its ``Linear`` ones are the identity on positive
    inputs (a hidden unit's positive input passes on unchanged), with none but dropout
    before the first (which reads the rows' own columns) or after the last."""
    children = list(module)
    linear = [i for i, child in enumerate(children) if isinstance(child, nn.Linear)]
    inner = children[linear[0] : linear[-1]]
    outer = children[: linear[0]] + children[linear[-1] + 1 :]
    return (
        len(weights) >= 2
        and len(weights[-1][0]) == 2
        and all(isinstance(c, (*_POSITIVE_IDENTITY, nn.Linear)) for c in inner)
        and all(isinstance(c, nn.Dropout | nn.Identity) for c in outer)
    )


def carries_path(module) -> bool:
    """Whether the network ``module`` (an ``nn.Sequential``) can carry a group-score
    path for two groups: a binary classifier whose activations are the identity on
    positive inputs, with a free unit in every hidden layer (:func:`free_units`)."""
    weights = extract_weights(module)
    return _carries_path(module, weights) and free_units(weights) is not None


def group_path_line(module, weights, calibration, columns):
    """``(start, end)``: the line of networks from ``weights`` (architecture ``module``)
    with a group-score path through its free units at strength 0 to the same at
    strength 1 (the logit margin lowered by :data:`_UNIT` of its standard deviation
    times the score's change from its mean, where the network favours the second group;
    raised where it favours the first), or None where it has no path: not a binary
    classifier whose activations are the identity on positive inputs, groups other than
    two, a hidden layer without a free unit (:func:`free_units`), or none of
    ``columns`` (the input columns the path may read) that tells the groups apart.

    The score is fitted on the ``calibration`` rows ``(X, y, groups, n_groups)``. The
    free units' weights are replaced (a constant unit's output moved into the next
    layer's bias first), then each layer is pruned back to its count of nonzero weights
    before, where the path added some, by the least ``|w|`` times the root mean square
    of its input on the rows. The zeros are the same on the whole line but for the
    logit's weight, zero at the start.
    """
    X, _, groups, n_groups = calibration
    if n_groups != 2 or not _carries_path(module, weights):
        return None
    units = free_units(weights)
    if units is None:
        return None
    every = max(1, len(X) // _FIT_ROWS)
    X, groups = X[::every].to(weights[0][0].dtype), groups[::every]
    path = _fitted_path(module, weights, X, groups, columns, units)
    if path is None:
        return None
    start = _with_path(module, weights, path, X)
    w_last, b_last = (part.clone() for part in start[-1])
    w_last[1, path.units[-1]] = -path.step
    b_last[1] += path.step * path.center
    return start, [*start[:-1], (w_last, b_last)]


def _fitted_path(module, weights, X, groups, columns, units) -> _Path | None:
    """The path through ``units`` of the score fitted on rows ``X`` of ``groups`` from
    ``columns`` (:func:`group_path_line`), or None where no column varies."""
    inputs = X[:, columns]
    centred = inputs - inputs.mean(0)
    gram = centred.T @ centred
    varies = gram.diagonal() > 0
    if not bool(varies.any()):
        return None
    columns, centred, gram = columns[varies], centred[:, varies], gram[varies][:, varies]
    member = (groups == 1).to(X.dtype)
    moment = centred.T @ (member - member.mean())
    coef = _solved(gram, moment)
    top = torch.argsort((coef * gram.diagonal().sqrt()).abs(), descending=True)[:_PATH_COLUMNS]
    columns, gram = columns[top], gram[top][:, top]
    coef = _solved(gram, moment[top])
    spread = (coef @ gram @ coef / max(len(X) - 1, 1)).sqrt()
    if not float(spread) > 0:
        return None
    coef = coef / spread
    score = X[:, columns] @ coef
    bias = float(_FLOOR - score.min())
    logits = network_forward(module, weights, X)
    margin = logits[:, 1] - logits[:, 0]
    positive = (margin > 0).to(X.dtype)
    favours_second = bool(positive[groups == 1].mean() >= positive[groups != 1].mean())
    step = (1.0 if favours_second else -1.0) * _UNIT * float(margin.std())
    return _Path(columns, coef, bias, units, float(score.mean()) + bias, step)


def _solved(gram, moment):
    """``(gram + ridge) ** -1 @ moment``, the ridge a millionth of the mean diagonal:
    least-squares coefficients from second moments."""
    ridge = 1e-6 * gram.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * eye, moment)


def _with_path(module, weights, path: _Path, X) -> list:
    """``weights`` with the ``path`` at strength 0 (:func:`group_path_line`)."""
    counts = [int((w != 0).sum()) for w, _ in weights]
    inputs = layer_inputs(module, weights, X)
    weights = [(w.clone(), b.clone()) for w, b in weights]
    for layer, unit in enumerate(path.units):
        (w_in, _), (w_out, b_out) = weights[layer], weights[layer + 1]
        if (w_in[unit] == 0).all():  # a constant: its output moves into the next bias
            b_out += w_out[:, unit] * inputs[layer + 1][0, unit]
        w_in[unit] = 0
        w_out[:, unit] = 0
    (w0, b0) = weights[0]
    w0[path.units[0], path.columns] = path.coef.to(w0.dtype)
    b0[path.units[0]] = path.bias
    for layer in range(1, len(path.units)):
        w, b = weights[layer]
        w[path.units[layer], path.units[layer - 1]] = 1.0
        b[path.units[layer]] = 0.0
    for layer, (w, _) in enumerate(weights):
        on_path = torch.zeros_like(w, dtype=torch.bool)
        if layer == 0:
            on_path[path.units[0], path.columns] = True
        elif layer < len(path.units):
            on_path[path.units[layer], path.units[layer - 1]] = True
        else:
            on_path[1, path.units[-1]] = True
        kept = (w != 0) | on_path
        extra = int(kept.sum()) - counts[layer]
        if extra > 0:
            saliency = w.abs() * inputs[layer].pow(2).mean(0).sqrt()[None, :]
            saliency = saliency.masked_fill(~kept | on_path, float("inf"))
            w.view(-1)[torch.argsort(saliency.flatten())[:extra]] = 0
    return weights
