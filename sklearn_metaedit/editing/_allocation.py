"""Layer budgets of a pruned network from each layer's own error curve.

How many weights each layer keeps decides more of a pruned network's accuracy than which
weights: global magnitude ranking gives a layer of large weights (a small output layer,
a first layer of standardised inputs) more than it needs and starves another, and no
fixed rule (uniform rates, magnitudes scaled by the inputs' spread or not) suits every
architecture. :func:`error_budgets` measures instead. For each layer alone, pruned to a
ladder of kept counts by optimal-brain-surgeon saliency and refitted by least squares
(the layers after it refitted to their original outputs), it records the squared error
of the network's outputs against the original's on the rows; then it picks one count per
layer, the counts summing to at most the weights to keep, that minimises the sum of the
layers' errors (a knapsack, solved exactly by dynamic programming over the counts), and
gives the weights left over to the layers in proportion to their counts. It is the
layer-wise database and dynamic programme of Frantar and Alistarh ("Optimal Brain
Compression", NeurIPS 2022, section 5) for unstructured sparsity, with the network's
output error in place of each layer's own, so that the errors of different layers are in
one unit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ._graph import layer_inputs, network_forward
from ._least_squares import (
    DAMPING,
    refit_units,
    remove_least_salient,
    ridge_problem,
    second_moments,
)

__all__ = ["error_budgets", "error_curves", "least_error_counts"]


def error_budgets(
    module,
    original,
    n_keep: int,
    rows,
    *,
    start=None,
    adjust=None,
    moments=None,
    damping: float = DAMPING,
    spacing: float = math.sqrt(2.0),
    below: int = 6,
) -> list[int]:
    """How many weights each layer of a network pruned to ``n_keep`` weights keeps.

    Layer ``l`` (``a`` its nonzero weights) is tried at the kept counts ``a * s *
    spacing ** j`` for every ``j`` from ``-below`` up (rounded, within 1 and ``a``; ``s``
    the network's kept share ``n_keep / sum(a)``) and at ``a``: from its
    original weights, each count removes the weights of lowest saliency
    ``log(w_j ** 2 / [S^-1]_jj) + adjust_j`` and refits the rest (ridge least squares on
    the layer's inputs in the original network, pulled towards ``start``, as in
    :func:`~._sparsity.prune_and_refit`). The error of a count is ``mean((f(x) -
    f0(x)) ** 2)`` over the rows and outputs, ``f`` the network with that layer alone
    pruned and the layers after it refitted to their original outputs on their new
    inputs (as :func:`~._sparsity.prune_and_refit` refits them), ``f0`` the original.
    The counts chosen minimise the sum of the layers' errors subject to their sum being
    at most ``n_keep`` (:func:`least_error_counts`); the rest of ``n_keep`` is shared in
    proportion to them (a layer never past ``a``). Solves and errors are in float32.

    Parameters
    ----------
    module : nn.Sequential
        The network's architecture.
    original : list of (Tensor, Tensor)
        The network's weights.
    n_keep : int
        Weights to keep in the whole network.
    rows : Tensor of shape (n_samples, n_features)
        Rows to measure on (draws from the input statistics do).
    start : list of (Tensor, Tensor), default=None
        The weights each refit is pulled towards (None: ``original``).
    adjust : list of Tensor, default=None
        Added to the log-saliencies (shapes of the weights).
    moments : Tensor, default=None
        ``[rows, 1]^T [rows, 1] / n_samples``, where the caller has them.
    damping : float, default=1e-2
    spacing : float, default=sqrt(2)
        Ratio of one tried count to the next.
    below : int, default=6
        Counts tried below the network's kept share (6: down to an eighth of it).

    Returns
    -------
    counts : list of int
        One per layer, summing to ``min(n_keep, sum(a))``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_metaedit.editing._graph import extract_weights
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> counts = error_budgets(net, extract_weights(net), 30, torch.randn(512, 8))
    >>> sum(counts)
    30
    """
    curves = error_curves(
        module,
        original,
        n_keep,
        rows,
        start=start,
        adjust=adjust,
        moments=moments,
        damping=damping,
        spacing=spacing,
        below=below,
    )
    alive = [counts[0] for counts, _, _ in curves]
    n_keep = min(int(n_keep), sum(alive))
    counts = least_error_counts([(c, e) for c, e, _ in curves], n_keep)
    return _spread(counts, alive, n_keep - sum(counts))


def error_curves(
    module,
    original,
    n_keep: int,
    rows,
    *,
    start=None,
    adjust=None,
    moments=None,
    damping: float = DAMPING,
    spacing: float = math.sqrt(2.0),
    below: int = 6,
) -> list[tuple[list[int], list[float], list]]:
    """Each layer's error curve (:func:`error_budgets`'s parameters): ``(counts,
    errors, weights)``, the counts tried from the layer's nonzero weights down, the
    network's output error with the layer alone pruned to each, and the layer's pruned
    ``(weight, bias)`` at each (None at the first, the original)."""
    # rankings and errors to compare, not digits: float32 throughout halves the cost
    with torch.no_grad():
        weights = [(w.detach().float(), b.detach().float()) for w, b in original]
        rows = rows.float()
        inputs = layer_inputs(module, weights, rows)
        targets = [
            nn.functional.linear(given, w, b)
            for given, (w, b) in zip(inputs, weights, strict=True)
        ]
        wanted = network_forward(module, weights, rows)
        alive = [int((w != 0).sum()) for w, _ in weights]
        share = n_keep / max(sum(alive), 1)
        curves = []
        for layer, ((weight, _), n_alive) in enumerate(zip(weights, alive, strict=True)):
            # from an eighth of the network's share up to the whole layer
            top = math.ceil(math.log(1.0 / max(share, 1e-12)) / math.log(spacing))
            ladder = {
                min(n_alive, max(1, round(n_alive * share * spacing**j)))
                for j in range(-below, top + 1)
            }
            ladder = sorted((k for k in ladder if k < n_alive), reverse=True)
            curve = ([n_alive], [0.0], [None])
            curves.append(curve)
            if not ladder:
                continue
            given = inputs[layer]
            gram = moments.float() if layer == 0 and moments is not None else None
            gram = second_moments(given) if gram is None else gram
            pull = weight if start is None else start[layer][0].detach().float()
            rhs, penalty = ridge_problem(gram, given, targets[layer], pull, damping)
            kept = torch.cat([weight != 0, weight.new_ones(len(weight), 1, dtype=bool)], 1)
            shift = None if adjust is None else adjust[layer].detach().float()
            solution, diagonal = refit_units(gram, rhs, penalty, kept, inverse_diagonal=True)
            for k in ladder:
                n_remove = int(kept[:, :-1].sum()) - k
                kept = remove_least_salient(solution, diagonal, kept, n_remove, shift)
                solution, diagonal = refit_units(gram, rhs, penalty, kept, inverse_diagonal=True)
                pruned = (solution[:, :-1], solution[:, -1])
                outputs = _refitted_after(module, layer, pruned, weights, inputs, targets, damping)
                curve[0].append(k)
                curve[1].append(float((outputs - wanted).pow(2).mean()))
                curve[2].append(pruned)
    return curves


def _refitted_after(module, layer, pruned, weights, inputs, targets, damping):
    """The network's outputs with ``layer``'s weights ``pruned`` and every layer after it
    refitted by ridge least squares to its original outputs (``targets``) on its new
    inputs, its zero weights kept zero, as :func:`~._sparsity.prune_and_refit` refits
    the layers after the first it prunes."""
    children = list(module)
    positions = [i for i, child in enumerate(children) if isinstance(child, nn.Linear)]
    given, current = inputs[layer], pruned
    for after in range(layer + 1, len(positions)):
        step = nn.Sequential(*children[positions[after - 1] : positions[after] + 1])
        given = layer_inputs(step, [current, weights[after]], given, upto=1)[1]
        weight = weights[after][0]
        gram = second_moments(given)
        rhs, penalty = ridge_problem(gram, given, targets[after], weight, damping)
        kept = torch.cat([weight != 0, weight.new_ones(len(weight), 1, dtype=bool)], 1)
        solution = refit_units(gram, rhs, penalty, kept)
        current = (solution[:, :-1], solution[:, -1])
    return network_forward(nn.Sequential(*children[positions[-1] :]), [current], given)


def least_error_counts(curves, n_keep: int) -> list[int]:
    """One count per layer from its ``(counts, errors)`` curve: those of the least total
    error whose sum is at most ``n_keep`` (dynamic programming over the total; all zero
    where no choice fits, fewer weights than layers)."""
    # least[s]: the least total error of the layers so far with at most s weights
    least = np.zeros(n_keep + 1)
    picks = []
    for counts, errors in curves:
        new = np.full(n_keep + 1, np.inf)
        pick = np.full(n_keep + 1, -1)
        for index, (count, error) in enumerate(zip(counts, errors, strict=True)):
            if count > n_keep:
                continue
            total = np.full(n_keep + 1, np.inf)
            total[count:] = least[: n_keep + 1 - count] + error
            better = total < new
            new[better], pick[better] = total[better], index
        least = new
        picks.append(pick)
    if not np.isfinite(least[n_keep]):  # fewer weights to keep than layers
        return [0] * len(curves)
    budgets, left = [], n_keep
    for (counts, _), pick in zip(reversed(curves), reversed(picks), strict=True):
        count = counts[int(pick[left])]
        budgets.append(count)
        left -= count
    return budgets[::-1]


def _spread(budgets: list[int], alive: list[int], extra: int) -> list[int]:
    """``budgets`` with ``extra`` more weights, shared in proportion to them (at least one
    a layer while any is left), no layer past its ``alive``."""
    budgets = list(budgets)
    while extra > 0:
        open_ = [layer for layer, n in enumerate(alive) if budgets[layer] < n]
        if not open_:
            break
        total = sum(budgets[layer] for layer in open_) or 1
        share = extra
        for layer in open_:
            add = max(1, share * budgets[layer] // total)
            add = min(alive[layer] - budgets[layer], extra, add)
            budgets[layer] += add
            extra -= add
            if extra == 0:
                break
    return budgets
