"""The exact parity projection and exact parity decisions.

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
tensors are projected with torch ops; CPU tensors with numpy, whose per-op overhead is
a fraction of torch's.

:func:`parity_decisions` turns scores into 0/1 decisions, one threshold per group, whose
selection-rate gap is at most ``epsilon`` as fairlearn computes it, flipping the fewest
and least confident decisions.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

__all__ = ["parity_decisions", "project_parity"]

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
# Up to this many knots in a problem, the numpy root search evaluates F' at all of them.
_NUMPY_ONE_LEVEL = 1024
# Candidate bands scored at once by parity_decisions, times batch rows and groups.
_CANDIDATE_CHUNK = 1 << 21


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
    device of ``scores``.

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
        The largest allowed difference between two group means, ``>= 0``.
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
    >>> from sklearn_metaedit.fairness._projection import project_parity
    >>> scores = torch.tensor([0.9, 0.8, 0.2, 0.1], dtype=torch.float64)
    >>> groups = torch.tensor([0, 0, 1, 1])
    >>> project_parity(scores, groups, 0.1)
    tensor([0.6000, 0.5000, 0.5000, 0.4000], dtype=torch.float64)
    """
    epsilon = _check_epsilon(epsilon)
    s2, codes, n_total, n_groups, squeeze = _prepare(scores, groups, blocks, n_groups)
    x = s2.to(torch.float64)
    if _numpy_path(x):
        if torch.is_grad_enabled() and x.requires_grad:
            z = _ParityProjectionNumpy.apply(x, codes, n_total, n_groups, epsilon)
        else:
            z = torch.from_numpy(_project_numpy(x, codes, n_total, n_groups, epsilon)[0])
    else:
        x = x.clamp(0.0, 1.0)
        z = _ParityProjection.apply(x, codes, n_total, n_groups, epsilon, scores.dtype)
    z = z.to(scores.dtype)
    return z.squeeze(0) if squeeze else z


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


# ----------------------------------------------------------------------- numpy path
#
# On the CPU a torch op costs several microseconds of dispatch however small its input,
# and the torch path above needs a few hundred of them; numpy's overhead is about a
# microsecond an op. For large inputs numpy sorts values (not indices) several times
# faster, and groups are stored back to back rather than padded to the largest. The
# numpy path below finds the same active set with one exact search per problem (batch
# row and block), the K groups of a problem handled together, and applies the same
# closed form and Jacobian.


# Row state by group kind (0: inactive, 2: upper band end, 4: lower band end) plus
# whether the row scores at least its group's threshold.
_STATES = np.array([0, 0, 2, 1, 1, 3], dtype=np.int8)


def _active_set_numpy(x: np.ndarray, codes: np.ndarray, n_total: int, n_groups: int, epsilon):
    """The numpy twin of :func:`_active_set`, with the group layout the closed form needs.

    Parameters
    ----------
    x : ndarray of shape (batch, n)
        Scores in ``[0, 1]``, float64.
    codes : ndarray of shape (batch, n)
        Group codes as :func:`_prepare` returns them (``-1``: unconstrained).

    Returns
    -------
    state : ndarray of shape (batch * n,) of int8
        As in :func:`_active_set`, flattened.
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
    """The closed form of :class:`_ParityProjection` on the active set of
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
    """The vector-Jacobian product of :class:`_ParityProjection`'s docstring, in numpy."""
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
    """:func:`project_parity` of CPU tensors by :class:`_ParityProjection`'s closed form
    and Jacobian, computed with numpy: the same result at a fraction of the per-op
    overhead. Scores outside ``[0, 1]`` are clipped first and receive no gradient, as
    through ``clamp``."""

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
    >>> from sklearn_metaedit.fairness._projection import parity_decisions
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


def _sort_by_group_stable(x: Tensor, codes: Tensor) -> Tensor:
    """Permutation sorting each row by (code, score descending, row index), exactly."""
    by_score = torch.sort(x, dim=1, descending=True, stable=True).indices
    by_code = torch.sort(codes.gather(1, by_score), dim=1, stable=True).indices
    return by_score.gather(1, by_code)
