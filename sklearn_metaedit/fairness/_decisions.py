"""Exact parity decisions: 0/1 decisions, one threshold per group, within a rate gap.

:func:`parity_decisions` turns scores into 0/1 decisions, one threshold per group, whose
selection-rate gap is at most ``epsilon`` as fairlearn computes it, flipping the fewest
and least confident decisions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._projection import (
    _check_epsilon,
    _group_layout,
    _padded,
    _prepare,
    _sort_by_group_stable,
)

__all__ = ["parity_decisions"]

# Candidate bands scored at once by parity_decisions, times batch rows and groups.
_CANDIDATE_CHUNK = 1 << 21


def _rates(k: Tensor, n: Tensor) -> Tensor:
    """Selection rates as fairlearn computes them: ``k / n`` rounded once in float64."""
    return k.to(torch.float64) / n


def parity_decisions(
    scores: Tensor,
    groups: Tensor,
    epsilon: float,
    *,
    n_groups: int | None = None,
    blocks: Tensor | None = None,
    threshold: float = 0.5,
) -> Tensor:
    """0/1 decisions whose selection-rate gap is at most ``epsilon``, closest to thresholding.

    Within each group the selected rows are its ``k_g`` highest scores (ties broken by row
    order: earlier rows first), so each group has one threshold. Among all ``(k_g)``
    whose selection rates ``k_g / n_g`` differ by at most ``epsilon`` -- evaluated in
    float64 exactly as fairlearn's ``demographic_parity_difference`` evaluates them -- the
    result minimises the total ``|s_i - threshold|`` of the rows whose decision differs
    from ``scores >= threshold``. The selection-rate constraint always has the all-zero
    and all-one solutions, so a result always exists.

    Parameters
    ----------
    scores : Tensor of shape (n,) or (batch, n)
        Scores (for instance probabilities or projected probabilities).
    groups : Tensor of shape (n,) or (batch, n)
        Integer group codes in ``0 .. n_groups - 1``; ``-1`` marks a row that no
        constraint involves (its decision is ``scores >= threshold``).
    epsilon : float
        The largest allowed difference between two groups' selection rates, ``>= 0``.
    n_groups : int, optional
        Number of group codes; inferred from ``groups`` when omitted.
    blocks : Tensor of shape (n,) or (batch, n), optional
        Non-negative block index of each row; each block meets the bound on its own.
    threshold : float, default=0.5
        The threshold that defines the unconstrained decisions.

    Returns
    -------
    decisions : Tensor of int64, shape of ``scores``
        0/1 decisions. Work and memory are O(batch * n * n_groups).

    Examples
    --------
    >>> import torch
    >>> from sklearn_metaedit.fairness import parity_decisions
    >>> scores = torch.tensor([0.9, 0.8, 0.6, 0.45, 0.3, 0.55])
    >>> groups = torch.tensor([0, 0, 0, 1, 1, 1])
    >>> parity_decisions(scores, groups, 0.34)
    tensor([1, 1, 1, 1, 0, 1])
    """
    # Rates lie in [0, 1], so any epsilon >= 1 admits every count, as epsilon = 1 does.
    epsilon = min(_check_epsilon(epsilon), 1.0)
    s2, codes, n_total, n_groups, squeeze = _prepare(scores, groups, blocks, n_groups)
    x = s2.detach().to(torch.float64)
    batch = x.shape[0]
    device = x.device
    baseline = x >= threshold
    order = _sort_by_group_stable(x, codes)
    counts, sorted_codes, ranks, n_max = _group_layout(order, codes, n_total)
    if n_max == 0:
        decisions = baseline.long()
        return decisions.squeeze(0) if squeeze else decisions
    d = _padded(x.gather(1, order), sorted_codes, ranks, n_total, n_max)
    k0 = torch.zeros(batch, n_total, dtype=torch.long, device=device)
    k0.scatter_add_(1, codes.clamp(min=0), (baseline & (codes >= 0)).long())
    q = torch.arange(n_max, device=device)
    valid = q < counts.unsqueeze(-1)
    # cost[k] - cost[k0] is the total |s - threshold| of the rows flipped to select k rows.
    step = torch.where(valid, threshold - d, 0.0)
    cost = torch.cat([torch.zeros_like(step[..., :1]), torch.cumsum(step, -1)], -1)

    # Candidate lower ends of the band: every achievable rate j / n_h.
    size = counts.to(torch.float64)
    j = torch.arange(n_max + 1, device=device)
    candidate = _rates(j, size.unsqueeze(-1))
    candidate_ok = (j <= counts.unsqueeze(-1)) & (counts > 0).unsqueeze(-1)
    candidate = torch.where(candidate_ok, candidate, 0.0).reshape(batch, -1)
    candidate_ok = candidate_ok.reshape(batch, -1)
    block = torch.arange(n_total, device=device) // n_groups
    candidate_block = block.repeat_interleave(n_max + 1)

    # Each candidate band costs the cheapest count of every group of its block; the
    # candidates are scored in chunks so that memory stays bounded.
    chunk = max(1, _CANDIDATE_CHUNK // (batch * n_total))
    totals = []
    for first in range(0, candidate.shape[1], chunk):
        part = slice(first, first + chunk)
        k, feasible = _counts_in_band(candidate[:, part], counts, k0, epsilon)
        involved = (block[:, None] == candidate_block[None, part]).unsqueeze(0) & (
            counts > 0
        ).unsqueeze(-1)
        flip_cost = cost.gather(-1, k) - cost.gather(-1, k0.unsqueeze(-1))
        total = torch.where(involved, flip_cost, 0.0).sum(1)
        possible = candidate_ok[:, part] & ~(involved & ~feasible).any(1)
        totals.append(torch.where(possible, total, torch.inf))
    total = torch.cat(totals, 1)

    # The cheapest candidate of each block fixes every group's count in that block.
    n_blocks = n_total // n_groups
    per_block = torch.where(
        candidate_block[None, None, :] == torch.arange(n_blocks, device=device)[None, :, None],
        total.unsqueeze(1),
        torch.inf,
    )
    best = candidate.gather(1, per_block.argmin(-1))  # (batch, n_blocks)
    k, _ = _counts_in_band(best, counts, k0, epsilon)
    own_block = (block[:, None] == torch.arange(n_blocks, device=device)[None, :]).unsqueeze(0)
    k_star = torch.where(own_block, k, 0).sum(-1)

    g = sorted_codes.clamp(min=0)
    selected = (sorted_codes >= 0) & (ranks < k_star.gather(1, g))
    decisions = baseline.clone()
    constrained = torch.zeros_like(baseline)
    constrained.scatter_(1, order, sorted_codes >= 0)
    chosen_rows = torch.zeros_like(baseline)
    chosen_rows.scatter_(1, order, selected)
    decisions = torch.where(constrained, chosen_rows, decisions).long()
    return decisions.squeeze(0) if squeeze else decisions


def _counts_in_band(lower: Tensor, counts: Tensor, k0: Tensor, epsilon: float):
    """Cheapest count per group for bands ``[lower, lower + epsilon]``, under float tests.

    Parameters
    ----------
    lower : Tensor of shape (batch, n_candidates)
        Candidate lower ends of the band.
    counts, k0 : Tensor of shape (batch, n_groups)
        Group sizes and unconstrained counts of selected rows.

    Returns
    -------
    k : Tensor of shape (batch, n_groups, n_candidates)
        ``k0`` clamped to the counts whose rate ``k / n_g`` (rounded as fairlearn rounds
        it) lies in the band: ``k / n_g >= lower`` and ``k / n_g - lower <= epsilon``.
    feasible : Tensor of the same shape
        Whether any count of the group lies in the band.
    """
    lower = lower.unsqueeze(1)
    n_g = counts.to(torch.float64).unsqueeze(-1)
    top = counts.unsqueeze(-1)
    k_lo = torch.minimum(torch.ceil(lower * n_g).long(), top).clamp(min=0)
    k_hi = torch.minimum(torch.floor((lower + epsilon) * n_g).long(), top).clamp(min=0)
    # The products are off by at most one count; settle them with the exact float tests.
    for _ in range(2):
        down = (k_lo > 0) & (_rates(k_lo - 1, n_g) >= lower)
        k_lo = torch.where(down, k_lo - 1, k_lo)
        up = (k_lo < top) & (_rates(k_lo, n_g) < lower)
        k_lo = torch.where(up, k_lo + 1, k_lo)
        up = (k_hi < top) & (_rates(k_hi + 1, n_g) - lower <= epsilon)
        k_hi = torch.where(up, k_hi + 1, k_hi)
        down = (k_hi > 0) & (_rates(k_hi, n_g) - lower > epsilon)
        k_hi = torch.where(down, k_hi - 1, k_hi)
    k = torch.minimum(torch.maximum(k0.unsqueeze(-1), k_lo), k_hi)
    feasible = (_rates(k_lo, n_g) >= lower) & (_rates(k_hi, n_g) - lower <= epsilon)
    feasible &= k_lo <= k_hi
    return k, feasible
