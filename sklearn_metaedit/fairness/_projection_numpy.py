"""The numpy twin of the parity projection, which project_parity runs on CPU tensors.

On the CPU a torch op costs several microseconds of dispatch however small its input,
and the torch path of :mod:`._projection` needs a few hundred of them; numpy's overhead
is about a microsecond an op. For large inputs numpy sorts values (not indices) several
times faster, and groups are stored back to back rather than padded to the largest. The
numpy path here finds the same active set as ``_projection._active_set`` with one exact
search per problem (batch row and block), the K groups of a problem handled together,
and applies the same closed form and Jacobian as ``_projection._ParityProjection``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# Up to this many knots in a problem, the numpy root search evaluates F' at all of them.
_NUMPY_ONE_LEVEL = 1024
# Row state by group kind (0: inactive, 2: upper band end, 4: lower band end) plus
# whether the row scores at least its group's threshold.
_STATES = np.array([0, 0, 2, 1, 1, 3], dtype=np.int8)


def _active_set_numpy(x: np.ndarray, codes: np.ndarray, n_total: int, n_groups: int, epsilon):
    """The numpy twin of :func:`._projection._active_set`, with the group layout the closed
    form needs.

    Parameters
    ----------
    x : ndarray of shape (batch, n)
        Scores in ``[0, 1]``, float64.
    codes : ndarray of shape (batch, n)
        Group codes as :func:`._projection._prepare` returns them (``-1``: unconstrained).

    Returns
    -------
    state : ndarray of shape (batch * n,) of int8
        As in :func:`._projection._active_set`, flattened.
    group : ndarray of shape (batch * n,)
        Each row's group among all ``batch * n_total`` groups; ``batch * n_total`` for
        unconstrained rows.
    sizes : ndarray of shape (batch * n_total,)
        Rows per group, float64.
    upper_end : ndarray of shape (batch * n_total,)
        Whether an active group sits at the upper band end.
    """
    batch, n = x.shape
    n_all = batch * n_total
    flat = x.reshape(-1)
    codes = codes.reshape(-1)
    group = np.where(codes < 0, n_all, codes)
    if batch > 1:
        group += np.repeat(np.arange(batch) * n_total, n) * (codes >= 0)
    counts = np.bincount(group, minlength=n_all + 1)[:n_all]
    sizes = counts.astype(np.float64)
    mu = np.bincount(group, flat, n_all + 1)[:n_all] / np.maximum(sizes, 1.0)
    upper_end = np.zeros(n_all, dtype=bool)
    # A block already within the band is left alone.
    nonempty = counts > 0
    shape = (n_all // n_groups, n_groups)
    top = np.where(nonempty, mu, -np.inf).reshape(shape).max(1)
    bottom = np.where(nonempty, mu, np.inf).reshape(shape).min(1)
    unsolved = np.flatnonzero(top - bottom > epsilon).tolist()
    if not unsolved:
        return np.zeros(batch * n, dtype=np.int8), group, sizes, upper_end

    # Rows grouped by a stable radix sort of their (small integer) group, then each
    # group's scores sorted in place, descending (ascending in -x): numpy sorts values
    # several times faster than it sorts indices.
    key_type = np.int16 if n_all < 2**15 - 1 else np.int64
    m = int(counts.sum())
    dc = -flat[np.argsort(group.astype(key_type), kind="stable")[:m]]
    starts = np.cumsum(counts) - counts
    heads = starts[nonempty]
    for first, size in zip(heads.tolist(), counts[nonempty].tolist(), strict=True):
        dc[first : first + size].sort()
    np.negative(dc, out=dc)
    gc = np.repeat(np.arange(n_all), counts)
    rank = np.arange(m) - starts[gc]

    # Each group's knots (those of _knots) and n_g * nu_g there, without padding: group g
    # occupies [base_g, base_g + 2 n_g + 2) of the flat arrays. The knots are written as
    # sums of nonnegative steps (between consecutive scores, and 1 - d_0 first), so that
    # they ascend within a group in floating point too, as np.interp and np.searchsorted
    # need: n_g times the clipped mean is sum_{j <= q} j step_j at shift -d_q, and the
    # group's score sum plus sum_{j <= q} (n_g - j) step_j at shift 1 - d_q.
    size_r = sizes[gc]
    q = rank.astype(np.float64)
    step = np.empty(m)
    step[1:] = dc[:-1] - dc[1:]
    step[heads] = 1.0 - dc[heads]
    sums = np.cumsum(np.stack([q, size_r - q]) * step, axis=1)
    before = np.zeros((2, m + 1))
    before[:, 1:] = sums
    sums -= before[:, starts[gc]]
    below, above = sums
    last = (starts + counts - 1)[nonempty]
    mean = np.zeros(n_all)
    mean[nonempty] = (below[last] + sizes[nonempty] * dc[last]) / sizes[nonempty]
    base = 2 * starts + 2 * np.arange(n_all)
    at_lower = base[gc] + rank
    at_upper = at_lower + counts[gc] + 2
    knots = np.empty(2 * (m + n_all))
    phi = np.zeros_like(knots)
    knots[at_lower] = below / size_r - epsilon
    knots[base + counts] = mean - epsilon
    knots[base + counts + 1] = mean
    knots[at_upper] = mean[gc] + above / size_r
    phi[at_lower] = -size_r * dc
    phi[at_upper] = size_r * (1 - dc)

    # Each group's piece decoded as in _active_set, into a rule per row: an upper-end
    # group shifts its rows scoring at least ``threshold`` (its ``unclipped`` highest) and
    # clips the rest at zero; a lower-end group clips its rows scoring at least
    # ``threshold`` (above its first shifted row) at one and shifts the rest. Rows tied
    # with the threshold go together: ties only straddle it at a clipping boundary, where
    # either state gives the same value, and an active group keeps a shifted row.
    kind = np.zeros(n_all + 1, dtype=np.int8)
    threshold = np.zeros(n_all + 1)
    base_l, counts_l, starts_l = base.tolist(), counts.tolist(), starts.tolist()
    for problem in unsolved:
        members = [g for g in range(problem * n_groups, (problem + 1) * n_groups) if counts_l[g]]
        spans = [slice(base_l[g], base_l[g] + 2 * counts_l[g] + 2) for g in members]
        pieces = [(knots[span], phi[span]) for span in spans]
        lower_end = _last_negative_knot(pieces)
        for g, (a, _) in zip(members, pieces, strict=True):
            count_le = int(a.searchsorted(lower_end, side="right"))
            size = counts_l[g]
            if 1 <= count_le <= size:
                upper_end[g] = True
                kind[g] = 2
                threshold[g] = dc[starts_l[g] + count_le - 1]
            elif count_le >= size + 2:
                kind[g] = 4
                clipped_one = min(count_le - size - 2, size - 1)
                threshold[g] = math.nextafter(float(dc[starts_l[g] + clipped_one]), 2.0)
    state = _STATES[kind[group] + (flat >= threshold[group])]
    return state, group, sizes, upper_end


def _last_negative_knot(pieces: list) -> float:
    """The last knot before the root of ``F'``: F' is linear from it to the root.

    ``F'(p) / 2 = sum_g interp(p, a_g, phi_g)`` over the ``(a_g, phi_g)`` of ``pieces``
    (each group's knots, ascending, and its share of ``F' / 2`` there). Small problems
    evaluate ``F'`` at every knot; larger ones first at every ``sqrt(L_g)``-th knot of
    each group, then at the at most ``sqrt(L_g)`` knots per group between the two probes
    that bracket the root, so that the search costs O(sqrt(n)) after the O(n) set-up of
    the knots.
    """
    longest = max(a.shape[0] for a, _ in pieces)
    stride = 1 if longest * len(pieces) <= _NUMPY_ONE_LEVEL else math.isqrt(longest)
    probes = np.concatenate([a[::stride] for a, _ in pieces] + [a[-1:] for a, _ in pieces])
    slope = _slope(probes, pieces)
    below = slope <= 0
    # The first knot of every group is -epsilon, where each share is -n_g max(s) <= 0.
    lower = np.max(probes, where=below, initial=-np.inf)
    if stride > 1:
        # Every group's share is nonnegative at its last knot, so some probe has F' > 0.
        upper = np.min(probes, where=~below, initial=np.inf)
        inner = np.concatenate(
            [a[a.searchsorted(lower, side="right") : a.searchsorted(upper)] for a, _ in pieces]
        )
        if inner.size:
            lower = max(lower, np.max(inner, where=_slope(inner, pieces) <= 0, initial=-np.inf))
    return lower


def _slope(probes: np.ndarray, pieces: list) -> np.ndarray:
    """``F'(p) / 2`` at every probe ``p``."""
    a, f = pieces[0]
    slope = np.interp(probes, a, f)
    for a, f in pieces[1:]:
        slope += np.interp(probes, a, f)
    return slope


def _closed_form_numpy(x, state, group, sizes, upper_end, n_groups: int, epsilon: float):
    """The closed form of :class:`._projection._ParityProjection` on the active set of
    :func:`_active_set_numpy`.

    Returns ``z`` of the shape of ``x`` and what :func:`_jacobian_numpy` needs.
    """
    flat = x.reshape(-1)
    shifted = state == 1
    n_all = sizes.shape[0]
    total_shifted = np.bincount(group, np.where(shifted, flat, 0.0), n_all + 1)[:n_all]
    unclipped = np.bincount(group, shifted, n_all + 1)[:n_all]
    c = np.bincount(group, state == 3, n_all + 1)[:n_all]
    active = unclipped > 0
    u = np.maximum(unclipped, 1.0)
    delta = upper_end * epsilon
    weight = np.where(active, sizes / u, 0.0)
    numerator = (weight * (c + total_shifted - sizes * delta)).reshape(-1, n_groups).sum(1)
    denominator = (weight * sizes).reshape(-1, n_groups).sum(1)
    denominator = np.where(denominator > 0, denominator, 1.0)
    lower = np.repeat(numerator / denominator, n_groups)
    nu = np.zeros(n_all + 1)
    nu[:n_all] = np.where(active, (sizes * (lower + delta) - c - total_shifted) / u, 0.0)
    z = np.where(shifted, flat + nu[group], flat)
    z[state == 2] = 0.0
    z[state == 3] = 1.0
    # Shifted rows land in [0, 1] up to rounding.
    np.clip(z, 0.0, 1.0, out=z)
    return z.reshape(x.shape), (state, group, weight, u, denominator, n_groups)


def _jacobian_numpy(grad: np.ndarray, saved) -> np.ndarray:
    """The vector-Jacobian product of :class:`._projection._ParityProjection`'s docstring,
    in numpy."""
    state, group, weight, u, denominator, n_groups = saved
    flat = grad.reshape(-1)
    n_all = weight.shape[0]
    shifted = state == 1
    per_group = np.bincount(group, np.where(shifted, flat, 0.0), n_all + 1)[:n_all]
    pooled = (weight * per_group).reshape(-1, n_groups).sum(1) / denominator
    correction = np.zeros(n_all + 1)
    correction[:n_all] = weight * np.repeat(pooled, n_groups) - per_group / u
    grad_x = np.where(state >= 2, 0.0, flat)
    grad_x += np.where(shifted, correction[group], 0.0)
    return grad_x.reshape(grad.shape)


def _project_numpy(x: Tensor, codes: Tensor, n_total: int, n_groups: int, epsilon: float):
    """The projection of ``x`` (float64, CPU) clipped to ``[0, 1]``, and what
    :func:`_jacobian_numpy` needs."""
    raw = x.detach().numpy()
    inside = (raw >= 0.0) & (raw <= 1.0)
    clipped = np.clip(raw, 0.0, 1.0)
    active_set = _active_set_numpy(clipped, codes.numpy(), n_total, n_groups, epsilon)
    z, saved = _closed_form_numpy(clipped, *active_set, n_groups, epsilon)
    return z, (inside, *saved)


class _ParityProjectionNumpy(torch.autograd.Function):
    """:func:`~sklearn_metaedit.fairness.project_parity` of CPU tensors by
    :class:`._projection._ParityProjection`'s closed form and Jacobian, computed with numpy:
    the same result at a fraction of the per-op overhead. Scores outside ``[0, 1]`` are
    clipped first and receive no gradient, as through ``clamp``."""

    @staticmethod
    def forward(ctx, x, codes, n_total, n_groups, epsilon):
        z, ctx.saved = _project_numpy(x, codes, n_total, n_groups, epsilon)
        return torch.from_numpy(z)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        inside, *saved = ctx.saved
        grad = grad.detach().to(torch.float64).numpy()
        grad_x = _jacobian_numpy(grad, saved)
        grad_x *= inside
        return torch.from_numpy(grad_x), None, None, None, None
