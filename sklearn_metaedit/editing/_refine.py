"""End-to-end refinement of an exact edit: the kept weights match the original's outputs.

A layer-by-layer refit (:func:`~._sparsity.prune_and_refit`, the reconstruction of
one-shot pruners such as OBC and SparseGPT) makes each layer's outputs match the
original network's, one layer at a time, so that what a layer cannot match is left to
the layers after it only through their own separate fits. :func:`refine_outputs` then
takes a few gradient steps on all the kept weights and biases together, on the squared
error between the edited network's outputs and the original's over the same rows: the
objective of the layer-wise refit, made global. Every zero weight stays exactly zero.

Checkpoint selection in training compares the metanetwork's exact edits before this
refinement (:func:`without_refinement`): it ranks what the metanetwork contributes, at a
fraction of the cost.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from ._graph import network_forward

__all__ = ["refine_outputs", "without_refinement"]

_REFINING: ContextVar[bool] = ContextVar("refining", default=True)

#: At most this many of the rows are read (drawn with ``random_state`` where more are
#: given): every step reads them all.
_ROWS = 1024
#: Adam's ``eps``, relative to the first gradient's root mean square: with 1e-3, steps
#: normalised weight by weight took float32 rounding (1e-8 between the edits of a network
#: and of its hidden units permuted) to differences of 1e-3 in 100 steps; with 0.1, to
#: 5e-6, at the same accuracy on Adult
_EPS = 0.1


def refine_outputs(
    module,
    original,
    edited,
    rows,
    *,
    steps: int,
    relative_rate: float,
    random_state: int = 0,
):
    """``edited`` after ``steps`` Adam steps on the outputs' squared error against
    ``original``'s over ``rows``, its zero weights kept zero.

    The loss is ``mean((f(x; edited) - f(x; original)) ** 2)`` over the rows and
    outputs (``f`` the network's logits), minimised over the nonzero weights and all
    biases of ``edited``. A step moves a weight by at most about ``relative_rate``
    times the root-mean-square of its layer's nonzero weights (where a layer has none,
    the largest of the other layers'), so that the steps are the same share of every
    network's weights whatever their scale; weights whose gradient is small beside the
    network's (below a tenth of the first step's root mean square) move in proportion
    to it (Adam's ``eps``). The rate decays to 0 on a cosine. The weights of the step
    with the lowest loss on the rows are returned (``edited`` itself where no step
    lowers it): the rows both fit and choose the step, so that a step is never worse
    on them than the start, not on other rows. Of more than 1,024 rows, 1,024 drawn
    with ``random_state`` are read. The steps run in float32, or in float64 for a
    float64 network, with gradients enabled whatever the caller's mode.

    Parameters
    ----------
    module : nn.Sequential
        The network's architecture.
    original, edited : list of (Tensor, Tensor)
        The original weights and the edit's (same shapes).
    rows : Tensor of shape (n_samples, n_features)
        Rows to match the outputs on (draws from the input statistics do).
    steps : int
        0 returns ``edited``, as does any call within :func:`without_refinement`.
    relative_rate : float
    random_state : int, default=0

    Returns
    -------
    weights : list of (Tensor, Tensor)
        In the dtype of ``edited``; zero wherever ``edited`` is.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_metaedit.editing._graph import extract_weights, network_forward
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> original = extract_weights(net)
    >>> pruned = [(w * (w.abs() > 0.3), b) for w, b in original]
    >>> rows = torch.randn(256, 4)
    >>> refined = refine_outputs(net, original, pruned, rows, steps=50, relative_rate=0.05)
    >>> def error(weights):
    ...     return float(((network_forward(net, weights, rows)
    ...                    - network_forward(net, original, rows)) ** 2).mean())
    >>> error(refined) < error(pruned)
    True
    >>> all(bool((w[p == 0] == 0).all()) for (w, _), (p, _) in zip(refined, pruned))
    True
    """
    if steps <= 0 or not _REFINING.get():
        return edited
    # gradients even where the caller runs without them (no_grad, inference_mode): the
    # tensors made here are ordinary ones, cloned from whatever the caller passed
    with torch.inference_mode(False), torch.enable_grad():
        return _refined(module, original, edited, rows, steps, relative_rate, random_state)


def _refined(module, original, edited, rows, steps, relative_rate, random_state):
    """:func:`refine_outputs`'s steps, with gradients enabled."""
    dtype = edited[0][0].dtype
    # float32 at least: a float64 network is refined in float64
    work = torch.promote_types(dtype, torch.float32)
    rows = rows.detach().to(work).clone()
    if len(rows) > _ROWS:
        generator = torch.Generator().manual_seed(random_state)
        rows = rows[torch.randperm(len(rows), generator=generator)[:_ROWS].to(rows.device)]
    with torch.no_grad():
        copies = [(w.detach().to(work).clone(), b.detach().to(work).clone()) for w, b in original]
        wanted = network_forward(module, copies, rows)
    # one flat vector of all the weights and biases, each layer's divided by its scale:
    # a step of Adam on it moves a weight by at most about ``relative_rate`` times its
    # layer's scale
    scales, parts, masks = [], [], []
    for weight, _ in edited:
        kept = weight[weight != 0].detach().to(work)
        scales.append(float(kept.pow(2).mean().sqrt()) if kept.numel() else 0.0)
    fallback = max(scales)
    if fallback == 0.0:
        return edited
    scales = [scale or fallback for scale in scales]
    for (weight, bias), scale in zip(edited, scales, strict=True):
        parts += [weight.detach().to(work).reshape(-1) / scale, bias.detach().to(work) / scale]
        masks += [(weight != 0).to(work).reshape(-1), torch.ones_like(bias, dtype=work)]
    flat = torch.cat(parts).clone().requires_grad_()
    mask = torch.cat(masks)
    sizes = [len(part) for part in parts]

    def unflatten(vector):
        pieces = vector.split(sizes)
        return [
            (pieces[2 * layer].view(weight.shape) * scale, pieces[2 * layer + 1] * scale)
            for layer, ((weight, _), scale) in enumerate(zip(edited, scales, strict=True))
        ]

    optimiser = torch.optim.Adam([flat], lr=relative_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    best, best_loss = None, math.inf
    for step in range(steps + 1):
        with torch.set_grad_enabled(step < steps):
            loss = ((network_forward(module, unflatten(flat * mask), rows) - wanted) ** 2).mean()
        value = loss.detach().item()
        if value < best_loss:
            # the loss of the weights as they are before this step's update
            best_loss, best = value, None if step == 0 else flat.detach() * mask
        if step == steps:
            break
        optimiser.zero_grad()
        loss.backward()
        if step == 0:
            # Adam's floor on the gradient's scale, a share of the first gradient's root
            # mean square over the network: a weight whose gradient is small (or
            # rounding noise) takes a step in proportion to it, not a full one
            typical = float(flat.grad.pow(2).sum() / mask.sum()) ** 0.5
            optimiser.param_groups[0]["eps"] = _EPS * typical + 1e-30
        optimiser.step()
        schedule.step()
    if best is None:
        return edited
    return [(w.to(dtype), b.to(dtype)) for w, b in unflatten(best)]


@contextmanager
def without_refinement():
    """Within it, :func:`refine_outputs` returns the edit it is given.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_metaedit.editing._graph import extract_weights
    >>> net = nn.Sequential(nn.Linear(4, 2))
    >>> weights = extract_weights(net)
    >>> with without_refinement():
    ...     same = refine_outputs(net, weights, weights, torch.randn(8, 4), steps=5,
    ...                           relative_rate=0.05)
    >>> same is weights
    True
    """
    token = _REFINING.set(False)
    try:
        yield
    finally:
        _REFINING.reset(token)
