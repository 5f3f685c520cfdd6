"""The pruning peers: exact sparsity, optimal reconstruction, and the quality order."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_metaedit import MLP
from sklearn_metaedit.demo._baselines import zero_columns
from sklearn_metaedit.demo._pruning import (
    _least_squares,
    layer_rates,
    obc_prune,
    obs_remove_columns,
    sparsegpt_prune,
    wanda_prune,
)
from sklearn_metaedit.editing._graph import extract_weights
from sklearn_metaedit.editing._magnitude import magnitude_prune_weights

PRUNERS = [wanda_prune, sparsegpt_prune, obc_prune]


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return MLP(12, hidden_sizes=(24, 16)).eval(), torch.randn(512, 12)


@pytest.mark.parametrize("prune", PRUNERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95])
def test_pruners_zero_exactly_the_layer_counts_and_leave_the_network_alone(
    network, prune, uniform, target
):
    module, X = network
    before = [w.clone() for w, _ in extract_weights(module)]
    pruned = prune(module, X, target, uniform=uniform)
    counts = [int((w == 0).sum()) for w, _ in extract_weights(pruned)]
    assert counts == layer_rates(module, target, uniform=uniform)
    n_weights = sum(w.numel() for w in before)
    assert sum(counts) == math.ceil(target * n_weights - 1e-9)
    for w, (now, _) in zip(before, extract_weights(module), strict=True):
        assert torch.equal(w, now)


def test_layer_rates_are_uniform_or_those_of_global_magnitude(network):
    module, _ = network
    sizes = [w.numel() for w, _ in extract_weights(module)]
    uniform = layer_rates(module, 0.9, uniform=True)
    assert all(abs(c - 0.9 * n) < 1 for c, n in zip(uniform, sizes, strict=True))
    magnitude = magnitude_prune_weights(extract_weights(module), 0.9)
    assert layer_rates(module, 0.9, uniform=False) == [int((w == 0).sum()) for w, _ in magnitude]


def test_obc_weights_are_the_optimum_for_their_mask():
    torch.manual_seed(1)
    layer = nn.Linear(10, 4).double()
    A = torch.randn(300, 10, dtype=torch.float64)
    H, W = _least_squares(A, A, layer)
    pruned = obc_prune(nn.Sequential(layer), A, 0.6)
    w = torch.cat([pruned[0].weight, pruned[0].bias[:, None]], dim=1).detach()
    # the damped quadratic (w - W) H (w - W)^T is stationary in every kept weight
    gradient = (w - W) @ H
    kept = torch.cat([pruned[0].weight != 0, torch.ones(4, 1, dtype=torch.bool)], dim=1)
    assert torch.allclose(gradient[kept], torch.zeros(int(kept.sum()), dtype=H.dtype), atol=1e-8)


def test_reconstruction_error_falls_from_magnitude_to_wanda_to_obs(network):
    module, X = network
    with torch.no_grad():
        reference = module(X)

    def error(net):
        with torch.no_grad():
            return float(((net(X) - reference) ** 2).mean())

    from sklearn_metaedit.editing._graph import load_weights

    magnitude = error(load_weights(module, magnitude_prune_weights(extract_weights(module), 0.9)))
    wanda, gpt, obc = (error(prune(module, X, 0.9)) for prune in PRUNERS)
    assert obc <= gpt < wanda < magnitude
    assert np.isfinite([magnitude, wanda, gpt, obc]).all()


def test_obs_column_removal_is_the_least_squares_reconstruction_of_the_first_layer():
    torch.manual_seed(3)
    X = torch.randn(400, 5) @ torch.randn(5, 5)  # correlated columns
    net = MLP(5, hidden_sizes=(4,))
    edited = obs_remove_columns(net, X, [1, 3])
    weight = edited[0].weight.detach().double()
    assert bool((weight[:, [1, 3]] == 0).all())
    assert torch.equal(edited[2].weight, net[2].weight)
    # brute force: the first layer's outputs regressed on the kept columns and a constant,
    # with a ridge of 1% of the mean diagonal pulling towards the kept weights
    A = torch.cat([X.double(), torch.ones(400, 1, dtype=torch.float64)], 1)
    W = torch.cat([net[0].weight, net[0].bias[:, None]], 1).detach().double()
    ridge = 0.01 * float((A.T @ A).diagonal().mean())
    keep = [0, 2, 4, 5]
    design = np.vstack([A[:, keep].numpy(), np.sqrt(ridge) * np.eye(4)])
    expected = np.stack(
        [
            np.linalg.lstsq(
                design,
                np.concatenate([(A @ W[unit]).numpy(), np.sqrt(ridge) * W[unit, keep].numpy()]),
                rcond=None,
            )[0]
            for unit in range(4)
        ]
    )
    got = torch.cat([weight[:, [0, 2, 4]], edited[0].bias.detach().double()[:, None]], 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    # and it reconstructs the layer better than zeroing the columns
    with torch.no_grad():
        zeroed = zero_columns(net, [1, 3])
        assert ((edited[0](X) - net[0](X)) ** 2).mean() < ((zeroed[0](X) - net[0](X)) ** 2).mean()
