"""Primal-dual decisions over a stream with a pooled parity guarantee: the math.

A stream of scores ``p_t`` in [0, 1] (the base model's probability of the positive
class) arrives with group codes ``g_t``. Each group ``g`` has a threshold ``theta_g``
and, for a band ``[lo, hi]`` of selection rates (width at most epsilon), the per-decision
linearisation of its two constraints ``rate_g <= hi`` and ``rate_g >= lo``: a decision
``d`` adds ``d - hi`` and ``lo - d`` to their running sums. After ``N_g`` decisions of
which ``S_g`` were positive, those sums are the pooled excess and deficit
``E_g = S_g - N_g hi`` and ``F_g = N_g lo - S_g``, and the duals are their lazy
(dual-averaging) projections onto ``[0, inf)``, scaled by the step size ``eta``::

    upper_g = eta * max(0, E_g)        lower_g = eta * max(0, F_g)
    d_t = 1[p_t + lower_g - upper_g >= theta_g]

The duals are functions of the pooled counts: a group whose pooled rate is inside the
band is left alone (its thresholds decide), and one outside it is pushed back in
proportion to how far out it is.

The guarantee holds for every sequence (:func:`gap_bound_constants`): since
``E_g + F_g = -N_g (hi - lo) <= 0``, at most one dual is positive. While ``E_g > 0``, a
decision of 1 needs ``eta E_g <= p - theta_g <= 1 - theta_g``, and raises ``E_g`` by
``1 - hi``; a decision of 0 lowers it. So ``E_g <= max(0, 1 - theta_g) / eta + 1 - hi``
at all times, that is ``rate_g <= hi + c_g^+ / N_g``; symmetrically
``rate_g >= lo - c_g^- / N_g`` with ``c_g^- = max(0, theta_g) / eta + lo``. The pooled
gap after any number of decisions, in any order, with any batch size and any drift of
the group proportions, is at most ``hi - lo + max_{g != h} (c_g^+ / N_g + c_h^- / N_h)``
(:func:`pooled_gap_bound`), which is at most ``hi - lo + (1 / eta + 1) (1 / N_g + 1 / N_h)``
for thresholds in [0, 1]: the excess over the band vanishes as ``O(1 / N)``.

The thresholds and the band come from the training data (:func:`fit_band_thresholds`):
the accuracy-optimal deterministic group thresholds whose selection rates fit in the
band, so that on a stream like the training data the duals seldom act.

The decision loop is plain Python over lists: each decision depends on the previous
ones of its group, so it cannot be vectorised, and a tight loop without numpy per row is
the fastest way to run it without a compiler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BandThresholds",
    "decide_stream",
    "dual_values",
    "fit_band_thresholds",
    "gap_bound_constants",
    "pooled_gap_bound",
    "score_stream",
]


def decide_stream(
    scores: list[float],
    codes: list[int],
    thresholds: list[float],
    n_decisions: list[int],
    n_selected: list[int],
    band: tuple[float, float],
    step_size: float,
) -> bytearray:
    """Decide a stream in order, updating the pooled counts in place after every decision.

    Parameters
    ----------
    scores : list of float, length n_samples
        Probability of the positive class, in [0, 1].
    codes : list of int, length n_samples
        Group code of each row, in ``0 .. n_groups - 1``.
    thresholds : list of float, length n_groups
        ``theta_g``.
    n_decisions, n_selected : list of int, length n_groups
        ``N_g`` and ``S_g`` so far; updated in place, so that the next call continues
        the stream.
    band : (float, float)
        ``(lo, hi)``, with ``0 <= lo <= hi <= 1``.
    step_size : float
        ``eta > 0``.

    Returns
    -------
    decisions : bytearray, length n_samples
        0/1 decisions.

    Examples
    --------
    >>> n, s = [0, 0], [0, 0]
    >>> list(decide_stream([0.9, 0.9, 0.9], [0, 0, 0], [0.5, 0.5], n, s, (0.2, 0.4), 1.0))
    [1, 0, 1]
    >>> n, s
    ([3, 0], [2, 0])
    """
    lo, hi = band
    eta = step_size
    out = bytearray(len(scores))
    i = 0
    for p, g in zip(scores, codes, strict=True):
        m = n_decisions[g]
        s = n_selected[g]
        excess = s - m * hi
        if excess > 0.0:
            p -= eta * excess
        else:
            deficit = m * lo - s
            if deficit > 0.0:
                p += eta * deficit
        if p >= thresholds[g]:
            out[i] = 1
            n_selected[g] = s + 1
        n_decisions[g] = m + 1
        i += 1
    return out


def score_stream(
    scores: list[float],
    codes: list[int],
    thresholds: list[float],
    n_decisions: list[int],
    n_selected: list[int],
    band: tuple[float, float],
    step_size: float,
) -> list[float]:
    """Like :func:`decide_stream`, but return the adjusted scores behind the decisions.

    The adjusted score of a row is ``clip(0.5 + p + lower_g - upper_g - theta_g, 0, 1)``
    with the duals at its decision time, so that it is at least 0.5 exactly when the
    decision is 1, and within a group it ranks rows as ``p`` does at fixed duals.

    Parameters
    ----------
    scores, codes, thresholds, n_decisions, n_selected, band, step_size
        As in :func:`decide_stream`; the counts are updated in place.

    Returns
    -------
    adjusted : list of float, length n_samples

    Examples
    --------
    >>> n, s = [0], [0]
    >>> score_stream([0.9, 0.9], [0, 0], [0.5], n, s, (0.2, 0.4), 1.0)
    [0.9, 0.30000000000000004]
    """
    lo, hi = band
    eta = step_size
    below_half = float(np.nextafter(0.5, 0.0))
    out = [0.0] * len(scores)
    i = 0
    for p, g in zip(scores, codes, strict=True):
        m = n_decisions[g]
        s = n_selected[g]
        excess = s - m * hi
        if excess > 0.0:
            p -= eta * excess
        else:
            deficit = m * lo - s
            if deficit > 0.0:
                p += eta * deficit
        margin = p - thresholds[g]
        if margin >= 0.0:
            out[i] = 0.5 + margin if margin < 0.5 else 1.0
            n_selected[g] = s + 1
        else:
            # 0.5 + margin may round up to 0.5 for a tiny negative margin; keep it below.
            out[i] = min(0.5 + margin, below_half) if margin > -0.5 else 0.0
        n_decisions[g] = m + 1
        i += 1
    return out


def dual_values(
    n_decisions: np.ndarray, n_selected: np.ndarray, band: tuple[float, float], step_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """The duals ``eta * max(0, S_g - N_g hi)`` and ``eta * max(0, N_g lo - S_g)``.

    Parameters
    ----------
    n_decisions, n_selected : ndarray of shape (n_groups,)
    band : (float, float)
        ``(lo, hi)``.
    step_size : float

    Returns
    -------
    upper, lower : ndarray of shape (n_groups,)

    Examples
    --------
    >>> import numpy as np
    >>> dual_values(np.array([10, 10]), np.array([5, 1]), (0.2, 0.4), 0.5)
    (array([0.5, 0. ]), array([0. , 0.5]))
    """
    n = np.asarray(n_decisions, dtype=np.float64)
    s = np.asarray(n_selected, dtype=np.float64)
    lo, hi = band
    return step_size * np.maximum(0.0, s - n * hi), step_size * np.maximum(0.0, n * lo - s)


def gap_bound_constants(
    thresholds: np.ndarray, band: tuple[float, float], step_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group constants of the guarantee: ``rate_g`` is within ``[lo - c^-/N, hi + c^+/N]``.

    ``c_g^+ = max(0, 1 - theta_g) / eta + 1 - hi`` bounds the pooled excess ``S_g - N_g hi``
    and ``c_g^- = max(0, theta_g) / eta + lo`` the pooled deficit ``N_g lo - S_g``, on
    every stream of scores in [0, 1] (see the module docstring for the proof).

    Parameters
    ----------
    thresholds : ndarray of shape (n_groups,)
    band : (float, float)
        ``(lo, hi)``.
    step_size : float

    Returns
    -------
    c_upper, c_lower : ndarray of shape (n_groups,)

    Examples
    --------
    >>> import numpy as np
    >>> gap_bound_constants(np.array([0.5]), (0.2, 0.4), 0.5)
    (array([1.6]), array([1.2]))
    """
    theta = np.asarray(thresholds, dtype=np.float64)
    lo, hi = band
    c_upper = np.maximum(0.0, 1.0 - theta) / step_size + (1.0 - hi)
    c_lower = np.maximum(0.0, theta) / step_size + lo
    return c_upper, c_lower


def pooled_gap_bound(
    n_decisions: np.ndarray,
    band: tuple[float, float],
    c_upper: np.ndarray,
    c_lower: np.ndarray,
) -> float:
    """The largest pooled selection-rate gap the guarantee allows after these decisions.

    Group ``g``'s pooled rate is at most ``min(1, hi + c_g^+ / N_g)`` and at least
    ``max(0, lo - c_g^- / N_g)``; the bound is the largest difference between one group's
    ceiling and another's floor, over the groups with at least one decision:
    ``hi - lo + O(1 / min_g N_g)``.

    Parameters
    ----------
    n_decisions : ndarray of shape (n_groups,)
        Decisions made per group since the stream started.
    band : (float, float)
        ``(lo, hi)``.
    c_upper, c_lower : ndarray of shape (n_groups,)
        From :func:`gap_bound_constants`.

    Returns
    -------
    bound : float
        0 when fewer than two groups have decisions.

    Examples
    --------
    >>> import numpy as np
    >>> bound = pooled_gap_bound(np.array([100, 300]), (0.2, 0.22), np.array([3.0, 3.0]),
    ...                          np.array([3.0, 3.0]))
    >>> round(bound, 4)
    0.06
    """
    n = np.asarray(n_decisions, dtype=np.float64)
    seen = n > 0
    if seen.sum() < 2:
        return 0.0
    lo, hi = band
    n = n[seen]
    ceiling = np.minimum(1.0, hi + np.asarray(c_upper, dtype=np.float64)[seen] / n)
    floor = np.maximum(0.0, lo - np.asarray(c_lower, dtype=np.float64)[seen] / n)
    pairs = ceiling[:, None] - floor[None, :]
    np.fill_diagonal(pairs, -np.inf)
    return float(max(pairs.max(), 0.0))


@dataclass(frozen=True)
class BandThresholds:
    """Group thresholds whose training selection rates fit in a band.

    Attributes
    ----------
    thresholds : ndarray of shape (n_groups,)
        ``theta_g``: a row of group ``g`` is selected when its score is ``>= theta_g``.
    rates : ndarray of shape (n_groups,)
        The selection rates these thresholds give on the training data.
    accuracy : float
        Their accuracy on the training data.
    """

    thresholds: np.ndarray
    rates: np.ndarray
    accuracy: float


def _range_max_table(values: np.ndarray) -> list[np.ndarray]:
    """Sparse table: level ``j`` holds the maxima of the windows of length ``2**j``."""
    table = [values]
    width = 1
    while 2 * width <= len(values):
        prev = table[-1]
        table.append(np.maximum(prev[:-width], prev[width:]))
        width *= 2
    return table


def _range_max(table: list[np.ndarray], start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Maxima over the inclusive index ranges ``[start, stop]``; ``-inf`` where empty."""
    out = np.full(len(start), -np.inf)
    valid = stop >= start
    if not valid.any():
        return out
    s, e = start[valid], stop[valid]
    level = np.floor(np.log2(e - s + 1)).astype(np.int64)
    result = np.empty(len(s))
    for j in np.unique(level):
        rows = level == j
        width = 1 << int(j)
        result[rows] = np.maximum(table[j][s[rows]], table[j][e[rows] - width + 1])
    out[valid] = result
    return out


def fit_band_thresholds(
    scores: np.ndarray, y: np.ndarray, codes: np.ndarray, n_groups: int, width: float
) -> BandThresholds:
    """Accuracy-optimal deterministic group thresholds with selection rates in one band.

    Within a group, a threshold selects the ``k`` highest scores, and its number of
    correct decisions is ``positives among the top k + negatives outside them``, for
    every ``k`` at once by cumulative sums (a ``k`` that would split tied scores is not
    available to a threshold). The band's lower edge may be taken at some group's
    chosen rate, so the search runs over all available rates ``k / n_g`` as lower edges,
    each group taking its best ``k`` with ``k / n_h`` in ``[edge, edge + width]`` (a
    range maximum, answered from a sparse table). Exact, ``O(n log n)``.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Probability of the positive class.
    y : ndarray of shape (n_samples,)
        0/1 labels.
    codes : ndarray of shape (n_samples,)
        Group codes in ``0 .. n_groups - 1``; every group must have a row.
    n_groups : int
    width : float
        The largest allowed difference between two groups' selection rates.

    Returns
    -------
    BandThresholds

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    >>> y = np.array([1, 1, 0, 1, 0, 0])
    >>> codes = np.array([0, 0, 0, 1, 1, 1])
    >>> fit_band_thresholds(scores, y, codes, 2, width=0.0).rates.tolist()
    [0.3333333333333333, 0.3333333333333333]
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    per_group = []
    for g in range(n_groups):
        mask = codes == g
        if not mask.any():
            raise ValueError(f"group code {g} has no training rows.")
        order = np.argsort(-scores[mask], kind="stable")
        s, t = scores[mask][order], y[mask][order]
        n = len(s)
        correct = np.concatenate([[0], np.cumsum(t)]) + (
            (n - t.sum()) - np.concatenate([[0], np.cumsum(1 - t)])
        )
        correct = correct.astype(np.float64)
        # A threshold cannot select part of a run of tied scores.
        splits_tie = np.zeros(n + 1, dtype=bool)
        splits_tie[1:n] = s[:-1] == s[1:]
        correct[splits_tie] = -np.inf
        per_group.append((s, n, correct, _range_max_table(correct)))

    # Candidate lower edges: every available rate of every group, as exact fractions.
    cand_num, cand_den = [], []
    for _, n, correct, _ in per_group:
        ks = np.flatnonzero(np.isfinite(correct))
        cand_num.append(ks)
        cand_den.append(np.full(len(ks), n))
    num = np.concatenate(cand_num)
    den = np.concatenate(cand_den)

    total = np.zeros(len(num))
    for _, n, _, table in per_group:
        start = -((-num * n) // den)  # ceil(num / den * n), exact in integers
        stop = np.floor((num / den + width) * n + 1e-9).astype(np.int64)
        stop = np.minimum(stop, n)
        total += _range_max(table, start, stop)
    best = int(np.argmax(total))

    thresholds = np.empty(n_groups)
    rates = np.empty(n_groups)
    for g, (s, n, correct, _) in enumerate(per_group):
        start = int(-((-num[best] * n) // den[best]))
        stop = min(int(np.floor((num[best] / den[best] + width) * n + 1e-9)), n)
        k = start + int(np.argmax(correct[start : stop + 1]))
        rates[g] = k / n
        if k == 0:
            thresholds[g] = (s[0] + 1.0) / 2.0 if s[0] < 1.0 else np.nextafter(1.0, 2.0)
        elif k == n:
            thresholds[g] = s[-1] / 2.0
        else:
            thresholds[g] = (s[k - 1] + s[k]) / 2.0
    return BandThresholds(thresholds, rates, float(total[best] / len(scores)))
