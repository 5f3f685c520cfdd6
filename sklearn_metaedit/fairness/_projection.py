"""The exact parity projection: scores moved the least distance to meet a parity gap.

:func:`project_parity` is the Euclidean projection of scores in ``[0, 1]`` onto the set
where every group's mean lies in a common band of width ``epsilon``::

    min ||z - s||^2  s.t.  z in [0, 1]^n,  max_g mean_g(z) - min_g mean_g(z) <= epsilon.

For a fixed band ``[a, a + epsilon]`` the problem separates by group: group ``g`` is
shifted, ``z_i = clip(s_i + nu_g, 0, 1)``, by the ``nu_g`` whose clipped mean reaches the
nearest band end (``nu_g = 0`` when its mean already lies in the band). The total cost
``F(a)`` is convex with ``F'(a) = 2 sum_g n_g nu_g(a)``, a nondecreasing piecewise-linear
function whose knots follow from one sort of the scores within each group. The root of
``F'`` fixes the active set (which rows are clipped, which groups sit at which band
end); on that active set the solution has a closed form, and its exact Jacobian. CUDA
tensors are projected with the torch ops of this module; CPU tensors with their numpy
twin in :mod:`._projection_numpy`, whose per-op overhead is a fraction of torch's.

The checks of the arguments and the grouping of rows by code here are shared with
:func:`~sklearn_metaedit.fairness.parity_decisions`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from ._projection_numpy import _ParityProjectionNumpy, _project_numpy

__all__ = ["project_parity"]

# Knots probed per group in each round of the root search: ceil(log_65(2 n_g + 3))
# rounds, 2 for a thousand rows and 4 for a million; more probes a round cost more
# searchsorted work than the rounds they save.
_PROBES = 64
# Up to this many knots per group, one round probes them all: for small problems the
# ops of a second round cost more than the extra searchsorted work.
_ONE_ROUND = 1024
# Which implementation project_parity runs on CPU tensors: "auto" and "numpy" take the
# numpy path, "torch" the torch path; CUDA tensors always take the torch path. On one CPU
# thread the numpy path was faster at every size measured, from one row of 256 to one of
# 10^6 and to batches of 1024 problems, by 2-20x with many groups.
_BACKEND = "auto"


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError(f"epsilon must be a real number >= 0, got {epsilon!r}.")
    epsilon = float(epsilon)
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")
    return epsilon


def _as_codes(values, like: Tensor, name: str) -> Tensor:
    codes = torch.as_tensor(values, device=like.device)
    if codes.is_floating_point() or codes.is_complex():
        if not torch.equal(codes, codes.round()):
            raise ValueError(f"{name} must hold integer codes, got non-integer values.")
    return codes.to(device=like.device, dtype=torch.long)


# numpy reads CPU tensors of these dtypes without copying and without torch's per-op
# overhead, which dominates the cost of small projections.
_NUMPY_DTYPES = (torch.float32, torch.float64)


def _has_nan(scores: Tensor) -> bool:
    if scores.device.type == "cpu" and scores.dtype in _NUMPY_DTYPES:
        return bool(np.isnan(scores.detach().numpy()).any())
    return bool(torch.isnan(scores).any())


def _extremes(codes: Tensor) -> tuple[int, int]:
    """The smallest and largest code, ``(0, -1)`` when there is none."""
    if not codes.numel():
        return 0, -1
    if codes.device.type == "cpu":
        values = codes.numpy()
        return int(values.min()), int(values.max())
    return int(codes.min()), int(codes.max())


def _prepare(scores: Tensor, groups, blocks, n_groups: int | None):
    """Validate the inputs and return ``(scores2d, codes2d, n_total, n_groups, squeeze)``.

    ``codes2d`` numbers the groups of all blocks consecutively: group ``g`` of block
    ``b`` gets code ``b * n_groups + g``; unconstrained rows get ``-1``.
    """
    if not isinstance(scores, Tensor):
        raise ValueError(f"scores must be a torch.Tensor, got {type(scores).__name__}.")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating-point tensor, got dtype {scores.dtype}.")
    if scores.ndim not in (1, 2):
        raise ValueError(
            f"scores must have shape (n,) or (batch, n), got shape {tuple(scores.shape)}."
        )
    if _has_nan(scores):
        raise ValueError("scores hold NaN; every row needs a score.")
    squeeze = scores.ndim == 1
    s2 = scores.unsqueeze(0) if squeeze else scores
    codes = _as_codes(groups, scores, "groups")
    if codes.ndim == 1 and codes.shape[0] == s2.shape[1]:
        codes = codes.unsqueeze(0).expand(s2.shape[0], -1)
    if codes.shape != s2.shape:
        raise ValueError(
            f"groups must have shape (n,) or the shape of scores {tuple(scores.shape)}, got "
            f"shape {tuple(torch.as_tensor(groups).shape)}."
        )
    smallest, largest = _extremes(codes)
    if smallest < -1:
        raise ValueError("groups must hold codes 0 .. n_groups - 1, or -1 for unconstrained rows.")
    if n_groups is None:
        n_groups = max(largest + 1, 1)
    elif isinstance(n_groups, bool) or not isinstance(n_groups, numbers.Integral) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive integer, got {n_groups!r}.")
    elif largest >= n_groups:
        raise ValueError(f"groups holds code {largest}, but n_groups={n_groups}.")
    n_groups = int(n_groups)
    n_blocks = 1
    if blocks is not None:
        block = _as_codes(blocks, scores, "blocks")
        if block.ndim == 1 and block.shape[0] == s2.shape[1]:
            block = block.unsqueeze(0).expand(s2.shape[0], -1)
        if block.shape != s2.shape:
            raise ValueError(
                f"blocks must have shape (n,) or the shape of scores {tuple(scores.shape)}, "
                f"got shape {tuple(torch.as_tensor(blocks).shape)}."
            )
        first_block, last_block = _extremes(block)
        if first_block < 0:
            raise ValueError("blocks must hold non-negative integer block indices.")
        n_blocks = last_block + 1 if block.numel() else 1
        codes = torch.where(codes >= 0, block * n_groups + codes, codes)
    return s2, codes.contiguous(), n_blocks * n_groups, n_groups, squeeze


def _numpy_path(x: Tensor) -> bool:
    """Whether project_parity solves ``x`` with the numpy path."""
    return x.device.type == "cpu" and _BACKEND != "torch"


def _group_layout(keys_sorted_order: Tensor, codes: Tensor, n_total: int):
    """Counts, sorted order and padded ranks of rows grouped by code.

    Parameters
    ----------
    keys_sorted_order : Tensor of shape (batch, n)
        A permutation that sorts every batch row by (code, score descending).
    codes : Tensor of shape (batch, n)

    Returns
    -------
    counts : Tensor of shape (batch, n_total)
    sorted_codes, ranks : Tensor of shape (batch, n)
        Code and rank within its group of each sorted position (rank 0 = highest score).
    n_max : int
        The largest group.
    """
    batch, n = codes.shape
    sorted_codes = codes.gather(1, keys_sorted_order)
    valid = sorted_codes >= 0
    counts = torch.zeros(batch, n_total, dtype=torch.long, device=codes.device)
    counts.scatter_add_(1, sorted_codes.clamp(min=0), valid.long())
    free = n - counts.sum(1, keepdim=True)
    starts = free + torch.cumsum(counts, 1) - counts
    position = torch.arange(n, device=codes.device).expand(batch, n)
    ranks = position - starts.gather(1, sorted_codes.clamp(min=0))
    n_max = int(counts.max()) if counts.numel() else 0
    return counts, sorted_codes, ranks, n_max


def _sort_by_group(x: Tensor, codes: Tensor, original_dtype: torch.dtype) -> Tensor:
    """Permutation sorting each row by (code ascending, score descending, row order)."""
    if original_dtype in (torch.float16, torch.bfloat16, torch.float32):
        # Scores are exact in float32 and non-negative, so their bit patterns sort as the
        # values do; one integer sort then orders by code and score at once.
        bits = (x.to(torch.float32) + 0.0).view(torch.int32).to(torch.long)
        key = (codes + 1) * (1 << 31) + (0x3F800000 - bits)
        return torch.sort(key, dim=1, stable=True).indices
    return _sort_by_group_stable(x, codes)


def _sort_by_group_stable(x: Tensor, codes: Tensor) -> Tensor:
    """Permutation sorting each row by (code, score descending, row index), exactly."""
    by_score = torch.sort(x, dim=1, descending=True, stable=True).indices
    by_code = torch.sort(codes.gather(1, by_score), dim=1, stable=True).indices
    return by_score.gather(1, by_code)


def _padded(values: Tensor, sorted_codes: Tensor, ranks: Tensor, n_total: int, n_max: int):
    """Scatter sorted rows into a ``(batch, n_total, n_max)`` array, zero-padded."""
    batch = values.shape[0]
    slots = torch.where(sorted_codes >= 0, sorted_codes * n_max + ranks, n_total * n_max)
    out = torch.zeros(batch, n_total * n_max + 1, dtype=values.dtype, device=values.device)
    out.scatter_(1, slots, values)
    return out[:, :-1].reshape(batch, n_total, n_max)


def _knots(d: Tensor, counts: Tensor, epsilon: float):
    """The knots of each group's share of ``F'/2`` as a function of the band's lower end.

    Parameters
    ----------
    d : Tensor of shape (batch, n_groups, n_max)
        Each group's scores in descending order, zero-padded.
    counts : Tensor of shape (batch, n_groups)

    Returns
    -------
    a : Tensor of shape (batch, n_groups, 2 * n_max + 3)
        Knot positions in ascending order: the lower-side knots (band end ``a + epsilon``
        meets the clipped mean at shift ``-d_q``), the plateau ``[mu - epsilon, mu]``, the
        upper-side knots (band end ``a`` meets it at shift ``1 - d_q``); padded with
        copies of the plateau start in the lower half and ``+inf`` at the end.
    phi : Tensor of the same shape
        ``n_g * nu_g`` at each knot.
    """
    n_max = d.shape[-1]
    n = counts.to(d.dtype).unsqueeze(-1)
    safe_n = n.clamp(min=1)
    q = torch.arange(n_max, device=d.device, dtype=d.dtype)
    valid = q < n
    prefix = torch.cumsum(d, -1)
    total = prefix[..., -1:]
    mu = total / safe_n
    # Clipped mean at shift -d_q: rows 0..q stay above zero.
    lower = (prefix - (q + 1) * d) / safe_n - epsilon
    # Clipped mean at shift 1 - d_q: rows 0..q are clipped at one.
    upper = ((q + 1) + (total - prefix) + (n - q - 1) * (1 - d)) / safe_n
    plateau_start = mu - epsilon
    lower = torch.where(valid, lower, plateau_start)
    upper = torch.where(valid, upper, torch.inf)
    inf = torch.full_like(mu, torch.inf)
    a = torch.cat([lower, plateau_start, mu, upper, inf], -1)
    a = torch.where(n > 0, a, torch.inf)
    # Rounding in the prefix sums must not break the order that searchsorted relies on.
    a = torch.cummax(a, -1).values
    zero = torch.zeros_like(mu)
    phi = torch.cat([-n * d, zero, zero, n * (1 - d), zero], -1)
    return a, phi


def _derivative(probes: Tensor, a: Tensor, phi: Tensor, same_block: Tensor) -> Tensor:
    """``F'(p) / 2`` at each probe ``p`` of each band-sharing block.

    Parameters
    ----------
    probes : Tensor of shape (batch, n_probes)
    a, phi : Tensor of shape (batch, n_groups, n_knots)
    same_block : Tensor of shape (batch, n_groups, n_probes)
        Whether group ``h`` (nonempty) shares the band of probe ``p``.

    Returns
    -------
    Tensor of shape (batch, n_probes)
    """
    batch, n_groups, n_knots = a.shape
    values = probes.unsqueeze(1).expand(batch, n_groups, -1).contiguous()
    right = torch.searchsorted(a, values, right=True)
    left = (right - 1).clamp(min=0)
    right = right.clamp(max=n_knots - 1)
    a0, a1 = a.gather(-1, left), a.gather(-1, right)
    f0, f1 = phi.gather(-1, left), phi.gather(-1, right)
    width = a1 - a0
    frac = torch.where(width > 0, (values - a0) / torch.where(width > 0, width, 1), 0.0)
    share = f0 + frac.clamp(0, 1) * (f1 - f0)
    return torch.where(same_block, share, 0.0).sum(1)


def _search(a: Tensor, phi: Tensor, counts: Tensor, n_groups: int) -> Tensor:
    """For every group, the number of its knots at which ``F' <= 0``.

    The knots of one group are sorted and ``F'`` is nondecreasing, so an ``(R + 1)``-ary
    search over each group's own knots finds the count, ``R`` probes per group and round;
    the root of ``F'`` then lies between the last knot with ``F' <= 0`` and the first with
    ``F' > 0`` over all groups, an interval that no knot enters.

    Returns
    -------
    Tensor of shape (batch, n_total) of int64
    """
    batch, n_total, n_knots = a.shape
    device = a.device
    width = n_knots - 1
    probes_per_group = width if width <= _ONE_ROUND else min(_PROBES, width)
    block = torch.arange(n_total, device=device) // n_groups
    nonempty = counts > 0
    lo = torch.zeros(batch, n_total, dtype=torch.long, device=device)
    hi = torch.where(nonempty, width, 0)
    steps = torch.arange(1, probes_per_group + 1, device=device)
    probe_block = block.repeat_interleave(probes_per_group)
    same_block = (block[:, None] == probe_block[None, :]).unsqueeze(0) & nonempty.unsqueeze(-1)
    while width > 0:
        span = (hi - lo).unsqueeze(-1)
        index = lo.unsqueeze(-1) + (span * steps) // (probes_per_group + 1)
        inside = index < hi.unsqueeze(-1)
        position = a.gather(-1, index.clamp(max=n_knots - 1))
        finite = inside & torch.isfinite(position)
        probes = torch.where(finite, position, 0.0).reshape(batch, -1)
        slope = _derivative(probes, a, phi, same_block).reshape(batch, n_total, -1)
        below = finite & (slope <= 0)
        above = inside & ~below
        lo = torch.maximum(lo, torch.where(below, index + 1, 0).amax(-1))
        hi = torch.minimum(hi, torch.where(above, index, n_knots).amin(-1))
        # Rounding could make F' dip at a knot; never let the bracket invert.
        lo = torch.minimum(lo, hi)
        # With span <= R every index is probed; otherwise the span shrinks R+1-fold.
        width = 0 if width <= probes_per_group else -(-width // (probes_per_group + 1))
    return lo


def _active_set(x: Tensor, codes: Tensor, n_total: int, n_groups: int, epsilon: float, dtype):
    """Row states and group terms of the projection's active set (no autograd).

    Returns
    -------
    state : Tensor of shape (batch, n) of int64
        0: free (``z = s``), 1: shifted with its group, 2: clipped at 0, 3: clipped at 1.
    upper_end, clipped_one, unclipped : Tensor of shape (batch, n_total)
        Whether an active group sits at the upper band end, how many of its rows are
        clipped at one, how many are shifted (0 for inactive groups).
    """
    batch, n = x.shape
    order = _sort_by_group(x, codes, dtype)
    counts, sorted_codes, ranks, n_max = _group_layout(order, codes, n_total)
    state = torch.zeros(batch, n, dtype=torch.long, device=x.device)
    zeros = torch.zeros(batch, n_total, dtype=torch.long, device=x.device)
    if n_max == 0:
        return state, zeros.bool(), zeros, zeros
    d = _padded(x.gather(1, order), sorted_codes, ranks, n_total, n_max)
    a, phi = _knots(d, counts, epsilon)
    count_le = _search(a, phi, counts, n_groups)

    # Decode each group's piece (knot indices: lower side 0..n_max-1, plateau start
    # n_max, plateau end n_max + 1, upper side from n_max + 2).
    upper_end = (count_le >= 1) & (count_le <= counts)
    lower_end = count_le >= n_max + 2
    clipped_one = torch.where(lower_end, (count_le - n_max - 2).clamp(max=counts - 1), 0)
    unclipped = torch.where(upper_end, count_le, torch.where(lower_end, counts - clipped_one, 0))

    # A block already within the band is left alone.
    total = d.sum(-1)
    mu = total / counts.clamp(min=1)
    nonempty = counts > 0
    blocks_shape = (batch, n_total // n_groups, n_groups)
    top = torch.where(nonempty, mu, -torch.inf).reshape(blocks_shape).amax(-1)
    bottom = torch.where(nonempty, mu, torch.inf).reshape(blocks_shape).amin(-1)
    feasible = ~(top - bottom > epsilon)
    feasible = feasible.repeat_interleave(n_groups, dim=1)
    upper_end &= ~feasible
    lower_end &= ~feasible
    clipped_one = torch.where(lower_end, clipped_one, 0)
    unclipped = torch.where(upper_end | lower_end, unclipped.clamp(min=1), 0)

    g = sorted_codes.clamp(min=0)
    valid = sorted_codes >= 0
    row_upper = valid & upper_end.gather(1, g)
    row_lower = valid & lower_end.gather(1, g)
    shifted = (row_upper & (ranks < unclipped.gather(1, g))) | (
        row_lower & (ranks >= clipped_one.gather(1, g))
    )
    sorted_state = torch.where(shifted, 1, 0)
    sorted_state = torch.where(row_upper & ~shifted, 2, sorted_state)
    sorted_state = torch.where(row_lower & ~shifted, 3, sorted_state)
    state.scatter_(1, order, sorted_state)
    return state, upper_end, clipped_one, unclipped


def project_parity(
    scores: Tensor,
    groups: Tensor,
    epsilon: float,
    *,
    n_groups: int | None = None,
    blocks: Tensor | None = None,
) -> Tensor:
    """Project scores onto the set where all group means lie within ``epsilon``.

    Solves, exactly and differentiably, ::

        min ||z - s||^2  s.t.  0 <= z <= 1,  max_g mean_g(z) - min_g mean_g(z) <= epsilon

    for every batch row (and independently for every block). The result is exact to
    floating point: the active set is found by an O(n log n) search over the knots of a
    piecewise-linear optimality condition, and the solution is then written in closed
    form on that active set, so that autograd returns the exact Jacobian wherever the
    active set is locally constant (almost everywhere). Computations run in float64 on
    the device of ``scores`` (with numpy for CPU tensors); the result has the dtype and
    device of ``scores``. A float32 result meets ``epsilon`` to float32 rounding. A
    float16 or bfloat16 result meets it exactly in its own dtype (its group means,
    computed exactly, differ by at most ``epsilon``): when rounding the float64
    solution would widen a gap past ``epsilon``, the solution for a band narrower by
    the most rounding can add (``finfo(dtype).eps / 2``: about 4.9e-4 for float16,
    3.9e-3 for bfloat16) is returned instead, so ``epsilon`` below that is refused.

    Parameters
    ----------
    scores : Tensor of shape (n,) or (batch, n)
        Scores in ``[0, 1]`` (probabilities); values outside are clipped to ``[0, 1]``
        first. Any floating dtype, any device.
    groups : Tensor of shape (n,) or (batch, n)
        Integer group codes in ``0 .. n_groups - 1``; ``-1`` marks a row that no
        constraint involves (it is only clipped to ``[0, 1]``). A shape ``(n,)`` tensor is
        shared by all batch rows. Groups with no row are ignored.
    epsilon : float
        The largest allowed difference between two group means, ``>= 0`` (for float16
        and bfloat16 scores, at least the rounding bound above).
    n_groups : int, optional
        Number of group codes; inferred from ``groups`` when omitted.
    blocks : Tensor of shape (n,) or (batch, n), optional
        Non-negative block index of each row. Every block is its own problem with its own
        band (equalized odds uses one block per label); by default all rows form one block.

    Returns
    -------
    z : Tensor of the shape, dtype and device of ``scores``
        The projection. Memory is O(batch * n_groups * largest group).

    Examples
    --------
    >>> import torch
    >>> from sklearn_metaedit.fairness import project_parity
    >>> scores = torch.tensor([0.9, 0.8, 0.2, 0.1], dtype=torch.float64)
    >>> groups = torch.tensor([0, 0, 1, 1])
    >>> project_parity(scores, groups, 0.1)
    tensor([0.6000, 0.5000, 0.5000, 0.4000], dtype=torch.float64)
    """
    epsilon = _check_epsilon(epsilon)
    rounding = _ROUNDING.get(scores.dtype)
    if rounding is not None and epsilon < rounding:
        raise ValueError(
            f"epsilon={epsilon!r} is below what {scores.dtype} can hold: rounding the "
            f"projected scores to {scores.dtype} can widen the gap by up to {rounding:.2g}. "
            f"Pass the scores as float32 or float64, or epsilon >= {rounding:.2g}."
        )
    s2, codes, n_total, n_groups, squeeze = _prepare(scores, groups, blocks, n_groups)
    x = s2.to(torch.float64)
    z = _solve(x, codes, n_total, n_groups, epsilon, scores.dtype).to(scores.dtype)
    if rounding is not None and _largest_gap(z, codes, n_total, n_groups) > epsilon:
        # the rounding moved a group mean past the band: solve for a band narrower by
        # the most rounding can add back
        z = _solve(x, codes, n_total, n_groups, epsilon - rounding, scores.dtype)
        z = z.to(scores.dtype)
    return z.squeeze(0) if squeeze else z


# Narrow dtypes whose rounding of scores in [0, 1] can move a gap measurably: the most
# it can widen one (each group mean moves by at most half a unit in the last place of
# values in [0.5, 1], eps / 4), with room for float64 rounding of the solve.
_ROUNDING = {
    dtype: torch.finfo(dtype).eps / 2 * (1 + 1e-6) for dtype in (torch.float16, torch.bfloat16)
}


def _solve(x: Tensor, codes: Tensor, n_total: int, n_groups: int, epsilon: float, dtype):
    """The projection of float64 ``x`` of shape ``(batch, n)``, in float64."""
    if _numpy_path(x):
        if torch.is_grad_enabled() and x.requires_grad:
            return _ParityProjectionNumpy.apply(x, codes, n_total, n_groups, epsilon)
        return torch.from_numpy(_project_numpy(x, codes, n_total, n_groups, epsilon)[0])
    x = x.clamp(0.0, 1.0)
    return _ParityProjection.apply(x, codes, n_total, n_groups, epsilon, dtype)


def _largest_gap(z: Tensor, codes: Tensor, n_total: int, n_groups: int) -> float:
    """The largest gap between two group means of ``z`` ``(batch, n)``, exact in float64."""
    batch = z.shape[0]
    index = codes.clamp(min=0)
    member = (codes >= 0).to(torch.float64)
    sums = torch.zeros(batch, n_total, dtype=torch.float64, device=z.device)
    sums.scatter_add_(1, index, z.detach().to(torch.float64) * member)
    counts = torch.zeros(batch, n_total, dtype=torch.float64, device=z.device)
    counts.scatter_add_(1, index, member)
    means = (sums / counts.clamp(min=1)).view(batch, -1, n_groups)
    present = counts.view(batch, -1, n_groups) > 0
    highest = torch.where(present, means, -torch.inf).amax(dim=-1)
    lowest = torch.where(present, means, torch.inf).amin(dim=-1)
    gaps = torch.where(present.any(dim=-1), highest - lowest, 0.0)
    return float(gaps.max()) if gaps.numel() else 0.0


class _ParityProjection(torch.autograd.Function):
    """The projection of scores already in ``[0, 1]``, with its exact Jacobian.

    An active group ``g`` with ``u_g`` shifted rows summing to ``S_g``, ``c_g`` rows
    clipped at one and band end ``a + delta_g`` has shift
    ``nu_g = (n_g (a + delta_g) - c_g - S_g) / u_g``; the band's lower end ``a`` makes the
    shifts balance, ``sum_g n_g nu_g = 0``, within each block, so that
    ``a = sum_g w_g (c_g + S_g - n_g delta_g) / D`` with ``w_g = n_g / u_g`` and
    ``D = sum_g w_g n_g``. Differentiating, a shifted row ``i`` of group ``h`` receives
    ``v_i + (w_h / D) sum_g w_g V_g - V_h / u_h`` from the output gradient ``v``, where
    ``V_g`` sums ``v`` over the shifted rows of ``g``; free rows pass ``v_i`` through and
    clipped rows receive nothing.
    """

    @staticmethod
    def forward(ctx, x, codes, n_total, n_groups, epsilon, dtype):
        state, upper_end, clipped_one, unclipped = _active_set(
            x, codes, n_total, n_groups, epsilon, dtype
        )
        batch = x.shape[0]
        g = codes.clamp(min=0)
        shifted = state == 1
        total_shifted = torch.zeros(batch, n_total, dtype=x.dtype, device=x.device)
        total_shifted.scatter_add_(1, g, torch.where(shifted, x, 0.0))
        sizes = torch.zeros(batch, n_total, dtype=x.dtype, device=x.device)
        sizes.scatter_add_(1, g, (codes >= 0).to(x.dtype))
        active = unclipped > 0
        u = unclipped.clamp(min=1).to(x.dtype)
        c = clipped_one.to(x.dtype)
        delta = upper_end.to(x.dtype) * epsilon
        weight = torch.where(active, sizes / u, 0.0)
        shape = (batch, n_total // n_groups, n_groups)
        numerator = (weight * (c + total_shifted - sizes * delta)).reshape(shape).sum(-1)
        denominator = (weight * sizes).reshape(shape).sum(-1)
        denominator = torch.where(denominator > 0, denominator, 1.0)
        lower = (numerator / denominator).repeat_interleave(n_groups, dim=1)
        nu = torch.where(active, (sizes * (lower + delta) - c - total_shifted) / u, 0.0)
        z = torch.where(shifted, x + nu.gather(1, g), x)
        z = torch.where(state == 2, 0.0, z)
        z = torch.where(state == 3, 1.0, z)
        # Shifted rows land in [0, 1] up to rounding.
        z = z.clamp(0.0, 1.0)
        ctx.n_groups = n_groups
        ctx.save_for_backward(state, g, weight, u, denominator)
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        state, g, weight, u, denominator = ctx.saved_tensors
        batch, n_total = weight.shape
        grad = grad.to(weight.dtype)
        shifted = state == 1
        per_group = torch.zeros(batch, n_total, dtype=grad.dtype, device=grad.device)
        per_group.scatter_add_(1, g, torch.where(shifted, grad, 0.0))
        shape = (batch, n_total // ctx.n_groups, ctx.n_groups)
        pooled = (weight * per_group).reshape(shape).sum(-1) / denominator
        pooled = pooled.repeat_interleave(ctx.n_groups, dim=1)
        correction = weight * pooled - per_group / u
        grad_x = torch.where(state >= 2, 0.0, grad)
        grad_x = torch.where(shifted, grad_x + correction.gather(1, g), grad_x)
        return grad_x, None, None, None, None, None
