"""The math of the online predictor: the decision loop, the guarantee, the warm start."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_metaedit.fairness._primal_dual import (
    decide_stream,
    dual_values,
    fit_band_thresholds,
    gap_bound_constants,
    pooled_gap_bound,
    score_stream,
)


def _stream(kind: str, n: int, n_groups: int, rng: np.random.Generator):
    """Streams of scores and groups, from benign to adversarial."""
    if kind == "uniform":
        scores, codes = rng.uniform(0, 1, n), rng.integers(0, n_groups, n)
    elif kind == "extreme":
        # Scores at 0 and 1 only: the rule has no slack to spare.
        scores, codes = rng.choice([0.0, 1.0], n), rng.integers(0, n_groups, n)
    elif kind == "sorted":
        # Everything high first, then everything low: the worst order for a running rate.
        scores, codes = np.sort(rng.uniform(0, 1, n))[::-1], rng.integers(0, n_groups, n)
    else:
        # Group proportions drift: group 0 first, the others later.
        codes = np.sort(rng.integers(0, n_groups, n))
        scores = rng.beta(2 + codes, 2, n)
    return scores.tolist(), codes.tolist()


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_groups=st.integers(2, 4),
    n=st.integers(1, 600),
    lo=st.floats(0.0, 0.9),
    width=st.floats(0.0, 0.1),
    step_size=st.floats(0.01, 20.0),
    kind=st.sampled_from(["uniform", "extreme", "sorted", "drift"]),
)
def test_pooled_rates_stay_within_the_guarantee_on_every_stream(
    seed, n_groups, n, lo, width, step_size, kind
):
    rng = np.random.default_rng(seed)
    band = (lo, min(1.0, lo + width))
    thresholds = rng.uniform(0, 1, n_groups)
    scores, codes = _stream(kind, n, n_groups, rng)
    counts, selected = [0] * n_groups, [0] * n_groups
    decisions = np.frombuffer(
        decide_stream(scores, codes, thresholds.tolist(), counts, selected, band, step_size),
        dtype=np.uint8,
    )
    c_upper, c_lower = gap_bound_constants(thresholds, band, step_size)
    codes = np.asarray(codes)
    for g in range(n_groups):
        mine = decisions[codes == g]
        assert counts[g] == len(mine) and selected[g] == mine.sum()
        if len(mine):
            rate = mine.mean()
            assert rate <= band[1] + c_upper[g] / len(mine) + 1e-9
            assert rate >= band[0] - c_lower[g] / len(mine) - 1e-9
    rates = [decisions[codes == g].mean() for g in range(n_groups) if counts[g]]
    gap = max(rates) - min(rates)
    assert gap <= pooled_gap_bound(np.array(counts), band, c_upper, c_lower) + 1e-9


def test_excess_bound_is_attained_within_one_decision():
    # Scores of 1 against a threshold of 0 push the excess as high as the rule allows:
    # the bound c^+ must hold, and the stream must come within one decision of it.
    band, step_size = (0.2, 0.3), 0.25
    counts, selected = [0, 0], [0, 0]
    excess = []
    for _ in range(400):
        decide_stream([1.0], [0], [0.0, 0.5], counts, selected, band, step_size)
        excess.append(selected[0] - counts[0] * band[1])
    c_upper, _ = gap_bound_constants(np.array([0.0, 0.5]), band, step_size)
    assert max(excess) <= c_upper[0] + 1e-9
    assert max(excess) >= c_upper[0] - 1.0


def test_deficit_bound_is_attained_within_one_decision():
    band, step_size = (0.2, 0.3), 0.5
    counts, selected = [0, 0], [0, 0]
    deficit = []
    for _ in range(400):
        decide_stream([0.0], [1], [0.5, 1.0], counts, selected, band, step_size)
        deficit.append(counts[1] * band[0] - selected[1])
    _, c_lower = gap_bound_constants(np.array([0.5, 1.0]), band, step_size)
    assert max(deficit) <= c_lower[1] + 1e-9
    assert max(deficit) >= c_lower[1] - 1.0


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batches_decide_exactly_as_one_row_at_a_time(batch_size):
    rng = np.random.default_rng(0)
    scores, codes = _stream("drift", 500, 3, rng)
    thresholds = [0.4, 0.5, 0.6]
    whole = decide_stream(scores, codes, thresholds, [0] * 3, [0] * 3, (0.3, 0.32), 0.5)
    counts, selected = [0] * 3, [0] * 3
    batched = bytearray()
    for start in range(0, len(scores), batch_size):
        stop = start + batch_size
        batched += decide_stream(
            scores[start:stop], codes[start:stop], thresholds, counts, selected, (0.3, 0.32), 0.5
        )
    assert batched == whole


def test_group_inside_the_band_is_decided_by_its_threshold_alone():
    # Scores alternate around the threshold: the rate is 1/2, inside [0.4, 0.6], so the
    # duals must never move a decision.
    scores = [0.7, 0.3] * 100
    decisions = decide_stream(scores, [0] * 200, [0.5], [0], [0], (0.4, 0.6), 5.0)
    assert list(decisions) == [1, 0] * 100


def test_group_outside_the_band_is_pushed_back_to_its_edge():
    scores = np.random.default_rng(1).uniform(0.6, 1.0, 2000).tolist()
    counts, selected = [0], [0]
    decide_stream(scores, [0] * 2000, [0.5], counts, selected, (0.1, 0.2), 1.0)
    c_upper, _ = gap_bound_constants(np.array([0.5]), (0.1, 0.2), 1.0)
    assert 0.2 - 1e-12 <= selected[0] / counts[0] <= 0.2 + c_upper[0] / counts[0]


def test_dual_values_are_the_projected_pooled_excess_and_deficit():
    upper, lower = dual_values(np.array([10, 10, 10]), np.array([5, 3, 1]), (0.2, 0.4), 0.5)
    np.testing.assert_allclose(upper, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(lower, [0.0, 0.0, 0.5])


def test_adjusted_scores_cross_one_half_exactly_at_the_decisions():
    rng = np.random.default_rng(2)
    scores, codes = _stream("uniform", 1000, 3, rng)
    thresholds = rng.uniform(0, 1, 3).tolist()
    decisions = decide_stream(scores, codes, thresholds, [0] * 3, [0] * 3, (0.3, 0.33), 2.0)
    adjusted = np.array(
        score_stream(scores, codes, thresholds, [0] * 3, [0] * 3, (0.3, 0.33), 2.0)
    )
    assert ((adjusted >= 0.5) == np.frombuffer(decisions, dtype=np.uint8).astype(bool)).all()
    assert adjusted.min() >= 0.0 and adjusted.max() <= 1.0


def test_gap_bound_shrinks_as_one_over_n():
    c_upper, c_lower = gap_bound_constants(np.array([0.3, 0.6]), (0.2, 0.25), 0.5)
    bounds = [
        pooled_gap_bound(np.array([n, 2 * n]), (0.2, 0.25), c_upper, c_lower)
        for n in (1000, 10_000, 100_000)
    ]
    excess = np.array(bounds) - 0.05
    np.testing.assert_allclose(excess[:-1] / excess[1:], [10.0, 10.0], rtol=1e-9)


def _brute_force(scores, y, codes, n_groups, width):
    """Best accuracy over every combination of group thresholds with rate spread <= width."""
    options = []
    for g in range(n_groups):
        s, t = scores[codes == g], y[codes == g]
        cuts = np.concatenate([[np.inf], np.unique(s)[::-1]])
        options.append([((s >= c).mean(), ((s >= c) == t).sum()) for c in cuts])
    best = -1
    for combo in itertools.product(*options):
        rates = [r for r, _ in combo]
        if max(rates) - min(rates) <= width + 1e-12:
            best = max(best, sum(c for _, c in combo))
    return best / len(scores)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("width", [0.0, 0.1, 0.3, 1.0])
def test_warm_start_thresholds_are_the_accuracy_optimum_of_brute_force(seed, width):
    rng = np.random.default_rng(seed)
    n_groups = 2 + seed % 2
    n = 24
    codes = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, n - n_groups)])
    # Rounded scores make ties, which a threshold cannot split.
    scores = np.round(rng.uniform(0, 1, n), 1)
    y = (rng.uniform(0, 1, n) < scores).astype(int)
    result = fit_band_thresholds(scores, y, codes, n_groups, width)
    assert result.accuracy == pytest.approx(_brute_force(scores, y, codes, n_groups, width))
    # The thresholds realise the reported rates and accuracy, within the width.
    chosen = scores >= result.thresholds[codes]
    rates = np.array([chosen[codes == g].mean() for g in range(n_groups)])
    np.testing.assert_allclose(rates, result.rates)
    assert rates.max() - rates.min() <= width + 1e-12
    assert (chosen == y).mean() == pytest.approx(result.accuracy)


def test_warm_start_without_constraint_is_each_groups_own_optimum():
    rng = np.random.default_rng(7)
    scores = rng.uniform(0, 1, 400)
    y = (rng.uniform(0, 1, 400) < scores).astype(int)
    codes = rng.integers(0, 2, 400)
    result = fit_band_thresholds(scores, y, codes, 2, width=1.0)
    for g in range(2):
        s, t = scores[codes == g], y[codes == g]
        best = max(((s >= c) == t).sum() for c in np.concatenate([[np.inf], s]))
        assert ((s >= result.thresholds[g]) == t).sum() == best


def test_warm_start_needs_every_group():
    with pytest.raises(ValueError, match="group code 1 has no training rows"):
        fit_band_thresholds(np.array([0.2, 0.8]), np.array([0, 1]), np.array([0, 0]), 2, 0.1)
