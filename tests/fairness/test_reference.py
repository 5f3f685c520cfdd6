"""The cvxpy reference: it solves the parity projection, with or without extra constraints."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from sklearn_metaedit.fairness import project_parity, project_parity_cvxpy


def _instance(seed, n=80, n_groups=3):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    groups[:n_groups] = np.arange(n_groups)
    return np.clip(rng.random(n) * 0.7 + 0.15 * groups, 0, 1), groups


def _gap(z, groups):
    means = [z[groups == g].mean() for g in np.unique(groups[groups >= 0])]
    return max(means) - min(means)


def test_reference_solves_a_known_instance():
    z = project_parity_cvxpy([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.1)
    np.testing.assert_allclose(z, [0.6, 0.5, 0.5, 0.4], atol=1e-9)


@pytest.mark.parametrize("solver", sorted({"OSQP", "CLARABEL"} & set(cp.installed_solvers())))
def test_reference_meets_the_band_and_agrees_across_solvers(solver):
    scores, groups = _instance(0)
    z = project_parity_cvxpy(scores, groups, 0.02, solver=solver)
    assert _gap(z, groups) <= 0.02 + 1e-8
    assert z.min() >= -1e-9 and z.max() <= 1 + 1e-9
    np.testing.assert_allclose(z, project_parity_cvxpy(scores, groups, 0.02), atol=1e-6)


def test_reference_leaves_unconstrained_rows_clipped_only():
    scores, groups = _instance(1)
    scores = scores * 1.4 - 0.2
    groups[::4] = -1
    z = project_parity_cvxpy(scores, groups, 0.0)
    free = groups < 0
    np.testing.assert_allclose(z[free], np.clip(scores[free], 0, 1), atol=1e-8)
    assert _gap(z, groups) <= 1e-8


def test_reference_honours_extra_linear_constraints():
    rng = np.random.default_rng(2)
    groups = np.repeat([0, 1, 2], [30, 25, 25])
    scores = 0.3 + 0.7 * rng.random(80) ** (1 + groups)
    # A constraint that does not bind changes nothing: the result is the exact projection.
    exact = project_parity(torch.tensor(scores), torch.tensor(groups), 0.05).numpy()
    loose = project_parity_cvxpy(scores, groups, 0.05, A=np.ones((1, 80)), b=[80.0])
    np.testing.assert_allclose(loose, exact, atol=1e-6)
    # A cap on the total binds. Its multiplier lambda turns the problem into the parity
    # projection of the shifted scores s - lambda / 2, which the exact projection solves.
    cap = exact.sum() - 2.0
    z = project_parity_cvxpy(scores, groups, 0.05, A=np.ones((1, 80)), b=[cap])
    assert abs(z.sum() - cap) <= 1e-7
    assert _gap(z, groups) <= 0.05 + 1e-8

    def total(shift):
        shifted = torch.tensor(scores - shift)
        return project_parity(shifted, torch.tensor(groups), 0.05).sum().item()

    low, high = 0.0, 0.3
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if total(middle) > cap else (low, middle)
    shifted = project_parity(torch.tensor(scores - low), torch.tensor(groups), 0.05).numpy()
    np.testing.assert_allclose(z, shifted, atol=1e-6)


def test_reference_blocks_have_independent_bands():
    scores, groups = _instance(3, n=120)
    blocks = np.arange(120) % 2
    z = project_parity_cvxpy(scores, groups, 0.01, blocks=blocks)
    for b in (0, 1):
        rows = blocks == b
        assert _gap(z[rows], groups[rows]) <= 0.01 + 1e-8
        alone = project_parity_cvxpy(scores[rows], groups[rows], 0.01)
        np.testing.assert_allclose(z[rows], alone, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": -1.0}, "epsilon"),
        ({"groups": [0, 1]}, "groups"),
        ({"A": np.ones((1, 4))}, "A and b"),
        ({"A": np.ones((1, 3)), "b": [1.0]}, "shape"),
        ({"A": np.ones((1, 4)), "b": [-1.0]}, "optimal solution"),
        ({"scores": np.ones((2, 2))}, "1-D"),
    ],
)
def test_reference_rejects_invalid_arguments(kwargs, message):
    arguments = {"scores": [0.1, 0.2, 0.8, 0.9], "groups": [0, 0, 1, 1], "epsilon": 0.1}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        project_parity_cvxpy(
            arguments.pop("scores"), arguments.pop("groups"), arguments.pop("epsilon"), **arguments
        )
