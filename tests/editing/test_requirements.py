import math

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from sklearn_metaedit._mlp import MLP
from sklearn_metaedit.editing._graph import extract_weights
from sklearn_metaedit.editing._requirements import (
    Fairness,
    Sparsity,
    divergence,
    equalized_odds_gap,
    features_used,
    magnitude_prune_weights,
    selection_rate_gap,
    soft_top_k,
    top_k_mask,
    weight_sparsity,
)


def test_top_k_mask_keeps_exactly_the_k_largest():
    scores = torch.randn(50, generator=torch.Generator().manual_seed(0))
    mask = top_k_mask(scores, 13)
    assert int(mask.sum()) == 13
    assert scores[mask].min() > scores[~mask].max()


def test_soft_top_k_tends_to_the_hard_mask_as_temperature_falls():
    scores = torch.randn(40, generator=torch.Generator().manual_seed(1))
    hard = top_k_mask(scores, 10).float()
    soft = soft_top_k(scores, 10, temperature=1e-4)
    assert torch.allclose(soft, hard, atol=1e-3)
    warm = soft_top_k(scores, 10, temperature=1.0)
    assert ((warm > 0) & (warm < 1)).all()
    # the gates order like the scores, so a gate rises by raising its own score
    assert torch.equal(torch.argsort(warm), torch.argsort(scores))


@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.77, 0.95, 1.0])
def test_magnitude_pruning_zeroes_exactly_the_smallest_weights(target):
    torch.manual_seed(0)
    weights = extract_weights(MLP(6, hidden_sizes=(9, 5), n_classes=2))
    pruned = magnitude_prune_weights(weights, target)
    n_weights = sum(w.numel() for w, _ in weights)
    assert weight_sparsity(pruned) == math.ceil(target * n_weights - 1e-9) / n_weights
    assert weight_sparsity(pruned) >= target
    flat = torch.cat([w.reshape(-1) for w, _ in weights]).abs()
    kept = torch.cat([w.reshape(-1) for w, _ in pruned]) != 0
    if 0 < kept.sum() < n_weights:
        assert flat[kept].min() > flat[~kept].max()
    for (w, b), (p, pb) in zip(weights, pruned, strict=True):
        assert torch.equal(pb, b)
        assert torch.equal(p[p != 0], w[p != 0])


@pytest.mark.parametrize("target", [0.3, 0.8, 0.9])
def test_protected_output_layer_is_pruned_last_and_the_target_still_holds(target):
    torch.manual_seed(0)
    # a wide network: its output layer (2 x 256) is a small share of the weights kept
    weights = extract_weights(MLP(30, hidden_sizes=(256, 256), n_classes=2))
    weights[-1] = (weights[-1][0] * 1e-3, weights[-1][1])  # the smallest weights of all
    n_weights = sum(w.numel() for w, _ in weights)
    n_output = weights[-1][0].numel()
    plain = magnitude_prune_weights(weights, target)
    protected = magnitude_prune_weights(weights, target, protect_output=True)
    for pruned in (plain, protected):
        assert weight_sparsity(pruned) == math.ceil(target * n_weights - 1e-9) / n_weights
    n_zero = math.ceil(target * n_weights - 1e-9)
    assert n_output <= 0.1 * (n_weights - n_zero)
    # plain pruning takes the tiny output layer first; protected keeps it while it can
    assert int((plain[-1][0] == 0).sum()) == min(n_zero, n_output)
    assert int((protected[-1][0] == 0).sum()) == max(0, n_zero - (n_weights - n_output))
    # among the other layers, protected pruning still zeroes the smallest magnitudes
    rest = torch.cat([w.reshape(-1) for w, _ in weights[:-1]]).abs()
    kept = torch.cat([w.reshape(-1) for w, _ in protected[:-1]]) != 0
    if 0 < kept.sum() < len(rest):
        assert rest[kept].min() > rest[~kept].max()


def test_output_layer_of_a_small_network_is_not_protected():
    # 6 -> 4 -> 2: the output layer is a third of the weights; protecting it would cost
    # the rest too much, so protected pruning is plain global pruning
    torch.manual_seed(0)
    weights = extract_weights(MLP(6, hidden_sizes=(4,), n_classes=2))
    for a, b in zip(
        magnitude_prune_weights(weights, 0.7, protect_output=True),
        magnitude_prune_weights(weights, 0.7),
        strict=True,
    ):
        assert torch.equal(a[0], b[0])


def test_features_used_lists_the_nonzero_first_layer_columns():
    torch.manual_seed(0)
    weights = extract_weights(MLP(5, hidden_sizes=(4,)))
    weights[0][0][:, [1, 3]] = 0
    assert features_used(weights) == [0, 2, 4]


def _decisions(seed, n=300, n_groups=3):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    y = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < 0.3 + 0.2 * groups / n_groups).astype(int)
    return y, y_pred, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaps_of_decisions_equal_fairlearn_for_three_groups(seed):
    y, y_pred, groups = _decisions(seed)
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    dp = selection_rate_gap(t(y_pred).float(), t(groups), 3)
    eo = equalized_odds_gap(t(y_pred).float(), t(y), t(groups), 3)
    assert float(dp) == pytest.approx(
        demographic_parity_difference(y, y_pred, sensitive_features=groups), abs=1e-6
    )
    assert float(eo) == pytest.approx(
        equalized_odds_difference(y, y_pred, sensitive_features=groups), abs=1e-6
    )


def test_selection_rate_gap_of_probabilities_is_differentiable():
    probabilities = torch.tensor([0.9, 0.8, 0.1, 0.3], requires_grad=True)
    gap = selection_rate_gap(probabilities, torch.tensor([0, 0, 1, 1]), 2)
    gap.backward()
    assert float(gap.detach()) == pytest.approx(0.85 - 0.2)
    assert torch.allclose(probabilities.grad, torch.tensor([0.5, 0.5, -0.5, -0.5]))


def test_gap_targets_reach_the_metanetwork_on_a_log_scale():
    fairness = Fairness(0.05, n_features=3)
    read = [fairness.metanet_target(t) for t in (0.0, 0.005, 0.02, 0.05, 0.2, 1.0)]
    assert read == pytest.approx(
        [math.log(0.1), math.log(0.1), math.log(0.4), 0.0, math.log(4.0), math.log(20.0)]
    )
    # the ends of a typical range of gaps are apart by log(10), not by 0.18
    assert read[4] - read[2] == pytest.approx(math.log(10.0))
    # the structural requirements read theirs as it is
    assert Sparsity(0.9, n_features=3).metanet_target(0.9) == pytest.approx(0.9)


def test_divergences_equal_scipy():
    generator = torch.Generator().manual_seed(0)
    original, edited = (
        torch.randn(20, 3, generator=generator),
        torch.randn(20, 3, generator=generator),
    )
    p, q = original.softmax(-1).numpy(), edited.softmax(-1).numpy()
    kl = np.mean([entropy(p[i], q[i]) for i in range(20)])
    js = np.mean([jensenshannon(p[i], q[i]) ** 2 for i in range(20)])
    assert float(divergence(original, edited, "kl")) == pytest.approx(kl, rel=1e-5)
    assert float(divergence(original, edited, "js")) == pytest.approx(js, rel=1e-5)
    assert float(divergence(original, original, "js")) == pytest.approx(0.0, abs=1e-7)
