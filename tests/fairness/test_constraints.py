"""Constraint specs: which rows each parity constraint involves and which share a band."""

import numpy as np
import pytest
import torch
from fairlearn.metrics import (
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate_difference,
    true_positive_rate_difference,
)

from sklearn_metaedit.fairness import (
    CONSTRAINTS,
    check_constraint,
    constraint_codes,
    parity_decisions,
    project_parity,
    project_parity_cvxpy,
)
from sklearn_metaedit.fairness._constraints import needs_labels


def _data(seed=0, n=400, n_groups=3):
    """Scores that depend on group and label, so every parity gap starts large."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    y = (rng.random(n) < 0.3 + 0.15 * groups).astype(np.int64)
    scores = np.clip(0.25 * y + 0.12 * groups + 0.5 * rng.random(n), 0, 1)
    return scores, groups, y


def _gap(z, groups):
    means = [z[groups == g].mean() for g in np.unique(groups)]
    return max(means) - min(means)


def _apply(constraint, scores, groups, y, epsilon):
    codes = constraint_codes(constraint, torch.tensor(groups), torch.tensor(y))
    z = project_parity(
        torch.tensor(scores), codes.groups, epsilon, n_groups=codes.n_groups, blocks=codes.blocks
    )
    d = parity_decisions(
        torch.tensor(scores), codes.groups, epsilon, n_groups=codes.n_groups, blocks=codes.blocks
    )
    return z.numpy(), d.numpy()


def test_unknown_constraint_is_a_value_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"demographic_parity.*equal_opportunity.*equalized_odds"):
        check_constraint("statistical_parity")
    with pytest.raises(ValueError, match="must be one of"):
        constraint_codes("parity", torch.tensor([0, 1]))
    assert [needs_labels(c) for c in CONSTRAINTS] == [False, True, True]


@pytest.mark.parametrize("constraint", ["equal_opportunity", "equalized_odds"])
def test_label_constraints_without_labels_are_a_value_error(constraint):
    with pytest.raises(ValueError, match="needs the true labels"):
        constraint_codes(constraint, torch.tensor([0, 1, 0]))


@pytest.mark.parametrize(
    ("y", "message"),
    [([0, 2, 1], "binary"), ([0, 1], "shape"), ([0.5, 1.0, 0.0], "integers")],
)
def test_invalid_labels_are_a_value_error(y, message):
    with pytest.raises(ValueError, match=message):
        constraint_codes("equalized_odds", np.array([0, 1, 0]), np.array(y))


def test_demographic_parity_constrains_every_row_in_one_band():
    scores, groups, y = _data()
    codes = constraint_codes("demographic_parity", groups)
    assert codes.blocks is None and codes.n_groups == 3
    np.testing.assert_array_equal(codes.groups.numpy(), groups)
    z, d = _apply("demographic_parity", scores, groups, y, 0.02)
    assert _gap(z, groups) <= 0.02 + 1e-12
    np.testing.assert_allclose(z, project_parity_cvxpy(scores, groups, 0.02), atol=1e-6)
    assert demographic_parity_difference(y, d, sensitive_features=groups) <= 0.02


def test_equal_opportunity_leaves_negative_rows_untouched():
    scores, groups, y = _data(1)
    scores[:5] = [1.3, -0.2, 0.5, 1.0, 0.0]
    epsilon = 0.02
    z, d = _apply("equal_opportunity", scores, groups, y, epsilon)
    negative = y == 0
    np.testing.assert_array_equal(z[negative], np.clip(scores[negative], 0, 1))
    np.testing.assert_array_equal(d[negative], scores[negative] >= 0.5)
    positive = ~negative
    assert _gap(scores[positive], groups[positive]) > 0.1
    assert _gap(z[positive], groups[positive]) <= epsilon + 1e-12
    # Scores outside [0, 1] are clipped before projecting.
    reference = project_parity_cvxpy(
        np.clip(scores, 0, 1), np.where(positive, groups, -1), epsilon
    )
    np.testing.assert_allclose(z, reference, atol=1e-6)
    assert true_positive_rate_difference(y, d, sensitive_features=groups) <= epsilon


def test_equalized_odds_meets_the_gap_within_each_label_block():
    scores, groups, y = _data(2)
    epsilon = 0.03
    z, d = _apply("equalized_odds", scores, groups, y, epsilon)
    for label in (0, 1):
        rows = y == label
        assert _gap(scores[rows], groups[rows]) > 0.1
        assert _gap(z[rows], groups[rows]) <= epsilon + 1e-12
    # Two independent bands: the rates need not agree across labels.
    np.testing.assert_allclose(
        z, project_parity_cvxpy(scores, groups, epsilon, blocks=y), atol=1e-6
    )
    assert true_positive_rate_difference(y, d, sensitive_features=groups) <= epsilon
    assert false_positive_rate_difference(y, d, sensitive_features=groups) <= epsilon
    assert equalized_odds_difference(y, d, sensitive_features=groups) <= epsilon


def test_equalized_odds_in_one_call_equals_one_call_per_block():
    scores, groups, y = _data(3)
    z, d = _apply("equalized_odds", scores, groups, y, 0.01)
    for label in (0, 1):
        rows = y == label
        alone = constraint_codes("demographic_parity", np.where(rows, groups, -1), n_groups=3)
        z_alone = project_parity(torch.tensor(scores), alone.groups, 0.01, n_groups=3).numpy()
        d_alone = parity_decisions(torch.tensor(scores), alone.groups, 0.01, n_groups=3).numpy()
        np.testing.assert_allclose(z[rows], z_alone[rows], atol=1e-14)
        np.testing.assert_array_equal(d[rows], d_alone[rows])


def test_constraint_codes_keep_batches_and_devices():
    groups = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]])
    y = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]])
    codes = constraint_codes("equal_opportunity", groups, y)
    np.testing.assert_array_equal(codes.groups.numpy(), [[0, -1, 1, 0], [-1, 1, 0, -1]])
    codes = constraint_codes("equalized_odds", groups, y)
    np.testing.assert_array_equal(codes.blocks.numpy(), y.numpy())
    assert codes.groups.device == groups.device and codes.n_groups == 2
