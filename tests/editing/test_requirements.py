import math

import numpy as np
import pytest
import torch
from fairlearn.metrics import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy
from torch import nn
from torch.nn import functional as F

from sklearn_metaedit import MLP
from sklearn_metaedit.editing._gates import soft_top_k, top_k_mask
from sklearn_metaedit.editing._graph import extract_weights, layer_inputs
from sklearn_metaedit.editing._least_squares import refit_units
from sklearn_metaedit.editing._magnitude import magnitude_prune_weights
from sklearn_metaedit.editing._measures import (
    divergence,
    features_used,
    tensor_selection_rate_gap,
    tensor_selection_rate_gap_bound,
    weight_sparsity,
)
from sklearn_metaedit.editing._parity import Fairness
from sklearn_metaedit.editing._requirements import REQUIREMENTS, make_requirement
from sklearn_metaedit.editing._sparsity import Sparsity, prune_and_refit, refit_kept_weights


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
    dp = tensor_selection_rate_gap(t(y_pred).float(), t(groups), 3)
    tpr = Fairness(4, kind="equal_opportunity").gap(t(y_pred).float(), t(y), t(groups), 3)
    eo = Fairness(4, kind="equalized_odds").gap(t(y_pred).float(), t(y), t(groups), 3)
    assert float(dp) == pytest.approx(
        demographic_parity_difference(y, y_pred, sensitive_features=groups), abs=1e-6
    )
    assert float(tpr) == pytest.approx(
        equal_opportunity_difference(y, y_pred, sensitive_features=groups), abs=1e-6
    )
    assert float(eo) == pytest.approx(
        equalized_odds_difference(y, y_pred, sensitive_features=groups), abs=1e-6
    )
    # the parity requirements measure the same gaps, one per constraint of the package
    for name, expected in (
        ("demographic_parity", dp),
        ("equal_opportunity", tpr),
        ("equalized_odds", eo),
    ):
        requirement = make_requirement(name, 4)
        assert requirement.name == name and requirement.needs_sensitive
        value = requirement.measure(None, t(y_pred) == 1, t(y), t(groups), 3)
        assert value == pytest.approx(float(expected), abs=1e-12)


def test_selection_rate_gap_of_probabilities_is_differentiable():
    probabilities = torch.tensor([0.9, 0.8, 0.1, 0.3], requires_grad=True)
    gap = tensor_selection_rate_gap(probabilities, torch.tensor([0, 0, 1, 1]), 2)
    gap.backward()
    assert float(gap.detach()) == pytest.approx(0.85 - 0.2)
    assert torch.allclose(probabilities.grad, torch.tensor([0.5, 0.5, -0.5, -0.5]))


def test_gap_targets_reach_the_metanetwork_on_a_log_scale():
    fairness = Fairness(3)
    read = [fairness.metanet_target(t) for t in (0.0, 0.005, 0.02, 0.05, 0.2, 1.0)]
    assert read == pytest.approx(
        [math.log(0.1), math.log(0.1), math.log(0.4), 0.0, math.log(4.0), math.log(20.0)]
    )
    # the ends of a typical range of gaps are apart by log(10), not by 0.18
    assert read[4] - read[2] == pytest.approx(math.log(10.0))
    # the structural requirements read theirs as it is
    assert Sparsity(3).metanet_target(0.9) == pytest.approx(0.9)


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


def _pruned_binary_network(seed):
    """A 6-16-16-2 MLP, its weights, the requirement with input statistics, and the
    magnitude-pruned weights at sparsity 0.6."""
    torch.manual_seed(seed)
    module = MLP(6, hidden_sizes=(16, 16), n_classes=2).double()
    weights = extract_weights(module)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(6, 6))
    X = torch.as_tensor(rng.normal(size=(5000, 6)) @ mixing + rng.normal(size=6))
    requirement = Sparsity(6)
    requirement.set_input_statistics(X.mean(0), torch.cov(X.T))
    return module, weights, requirement, magnitude_prune_weights(weights, 0.6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recalibration_matches_the_original_positive_share_on_the_proxy_rows(seed):
    from sklearn_metaedit.editing._graph import network_forward

    module, weights, requirement, pruned = _pruned_binary_network(seed)
    # move the pruned network's threshold far off, so that it labels almost every row alike
    w, b = pruned[-1]
    off = [*pruned[:-1], (w, b + torch.tensor([5.0, -5.0], dtype=b.dtype))]
    item = {"module": module, "weights": weights}
    fixed = requirement.recalibrate(item, off)
    rows = requirement.proxy_rows("cpu", torch.float64)
    assert rows.shape == (1024, 6)
    # the proxy rows follow the recorded statistics
    assert torch.allclose(rows.mean(0), requirement.input_mean, atol=0.3 * rows.std(0).max())

    def share(ws):
        logits = network_forward(module, ws, rows)
        return float((logits[:, 1] > logits[:, 0]).double().mean())

    assert abs(share(fixed) - share(weights)) <= 1.5 / len(rows)
    assert abs(share(off) - share(weights)) > 0.05
    # only the output biases move, by opposite amounts; every zero stays zero
    for (w0, b0), (w1, b1) in zip(off[:-1], fixed[:-1], strict=True):
        assert torch.equal(w0, w1) and torch.equal(b0, b1)
    assert torch.equal(off[-1][0], fixed[-1][0])
    delta = fixed[-1][1] - off[-1][1]
    assert torch.allclose(delta[0], -delta[1])
    # the same edit from the already recalibrated weights is a fixed point
    again = requirement.recalibrate(item, fixed)
    assert abs(share(again) - share(fixed)) <= 1.5 / len(rows)


def test_recalibration_leaves_other_networks_and_unfitted_requirements_alone():
    torch.manual_seed(0)
    module = MLP(4, hidden_sizes=(8,), n_classes=3)
    weights = extract_weights(module)
    requirement = Sparsity(4)
    requirement.set_input_statistics(torch.zeros(4), torch.eye(4))
    item = {"module": module, "weights": weights}
    edited = magnitude_prune_weights(weights, 0.5)
    assert requirement.recalibrate(item, edited) is edited  # three classes
    binary = MLP(4, hidden_sizes=(8,), n_classes=2)
    bare = Sparsity(4)  # no input statistics: nothing to draw proxy rows from
    pruned = magnitude_prune_weights(extract_weights(binary), 0.5)
    assert (
        bare.recalibrate({"module": binary, "weights": extract_weights(binary)}, pruned) is pruned
    )


def test_sparsity_range_draws_kept_fractions_log_uniformly_and_spaces_anchors_alike():
    from scipy.stats import kstest

    requirement = Sparsity(10)
    rng = np.random.RandomState(0)
    draws = np.array([requirement.sample_target(rng, 0.5, 0.95) for _ in range(4000)])
    assert draws.min() >= 0.5 and draws.max() <= 0.95
    # log(1 - s) is uniform on [log 0.05, log 0.5]
    logs = np.log1p(-draws)
    low, high = math.log(0.05), math.log(0.5)
    assert kstest(logs, "uniform", args=(low, high - low)).pvalue > 0.01
    assert 0.27 < np.mean(draws >= 0.9) < 0.33  # log(2) / log(10) of the draws
    anchors = requirement.target_anchors(0.5, 0.95)
    assert len(anchors) == requirement.n_target_anchors == 4
    assert anchors[0] == pytest.approx(0.5) and anchors[-1] == pytest.approx(0.95)
    kept = 1 - np.array(anchors)
    assert np.allclose(kept[1:] / kept[:-1], (0.05 / 0.5) ** (1 / 3))
    assert requirement.target_anchors(0.7, 0.7) is None
    # the metanetwork reads a sparsity as it is: the anchors are the targets
    assert requirement.anchor_targets(0.5, 0.95) == anchors
    # a range up to 1 (every weight zero) stays finite and within the range
    draws = [requirement.sample_target(rng, 0.6, 1.0) for _ in range(200)]
    assert 0.6 - 1e-12 <= min(draws) and max(draws) <= 1.0
    ends = requirement.target_anchors(0.6, 1.0)
    assert np.isfinite(ends).all() and ends[0] == pytest.approx(0.6)
    assert ends[-1] == pytest.approx(1.0, abs=1e-5)
    # the other requirements draw uniformly and read one output at every target
    fairness = Fairness(10)
    assert fairness.target_anchors(0.02, 0.2) is None
    assert fairness.anchor_targets(0.02, 0.2) is None
    gaps = np.array([fairness.sample_target(rng, 0.02, 0.2) for _ in range(4000)])
    assert kstest(gaps, "uniform", args=(0.02, 0.18)).pvalue > 0.01


def test_every_constraint_of_the_package_is_a_requirement_with_its_default_target():
    from sklearn_metaedit.fairness import CONSTRAINTS

    assert set(REQUIREMENTS) == {"sparsity", "data_minimisation", *CONSTRAINTS}
    defaults = {name: make_requirement(name, 6).default_target() for name in REQUIREMENTS}
    assert defaults == {
        "sparsity": 0.5,
        "data_minimisation": None,
        **dict.fromkeys(CONSTRAINTS, 0.05),
    }
    with pytest.raises(ValueError, match="requirement='pruning' is not supported"):
        make_requirement("pruning", 6)


@pytest.mark.parametrize("name", ["sparsity", "demographic_parity", "equal_opportunity"])
def test_fractional_targets_are_numbers_in_the_unit_interval(name):
    requirement = make_requirement(name, 6)
    assert requirement.check_target(0.25) == 0.25 and isinstance(
        requirement.check_target(1), float
    )
    for bad in (-0.1, 1.5, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match=f"target for {name} must be a number in"):
            requirement.check_target(bad)


def test_a_budget_is_a_whole_number_of_allowed_features():
    requirement = make_requirement("data_minimisation", 6, forbidden=[0, 1])
    assert requirement.check_target(None) is None
    assert requirement.check_target(np.int64(4)) == 4
    for bad in (0, 5, 2.5, True):
        with pytest.raises(ValueError, match=r"an integer in \[1, 4\]"):
            requirement.check_target(bad)


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("sparsity", (0.8, 0.2), "low <= high"),
        ("sparsity", (0.2, 1.5), "must be a number in"),
        ("sparsity", (0.2,), "a pair"),
        ("sparsity", 0.5, "a pair"),
        ("demographic_parity", (0.02, -0.2), "must be a number in"),
        ("data_minimisation", (2, 9), r"an integer in \[1, 6\]"),
        ("data_minimisation", (5, 2), "low <= high"),
    ],
)
def test_a_target_range_is_a_pair_of_targets_in_order(name, bad, message):
    requirement = make_requirement(name, 6)
    with pytest.raises(ValueError, match=message):
        requirement.check_target_range(bad)


def test_a_range_is_drawn_and_validated_within_itself():
    budget = make_requirement("data_minimisation", 10)
    assert budget.check_target_range([3, 7]) == (3, 7)
    assert budget.validation_targets(5, (3, 7)) == [3, 5, 7]
    assert budget.validation_targets(4, (3, 7)) == [3, 5, 7, 4]
    assert budget.validation_targets(4, None) == [4]
    rng = np.random.RandomState(0)
    assert {budget.draw_target(rng, 4, (3, 7)) for _ in range(500)} == set(range(3, 8))
    assert budget.draw_target(rng, 4, None) == 4
    gap = make_requirement("equalized_odds", 10)
    assert gap.validation_targets(0.05, (0.02, 0.2)) == pytest.approx([0.02, 0.11, 0.2, 0.05])
    draws = [gap.draw_target(rng, 0.05, (0.02, 0.2)) for _ in range(500)]
    assert 0.02 <= min(draws) and max(draws) <= 0.2


def test_refit_solves_each_units_masked_ridge_least_squares_like_numpy():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    original = [(w.double(), b.double()) for w, b in extract_weights(net)]
    pruned = [(w * (torch.rand(w.shape) > 0.5), b) for w, b in original]
    rows = torch.randn(300, 5, dtype=torch.float64)
    damping = 0.05
    refitted = refit_kept_weights(net, original, pruned, rows, damping=damping)
    # brute force, layer after layer: each unit's kept weights and bias by numpy's
    # least squares on rows stacked with the ridge rows that pull towards the start
    expected = []
    for layer, (w, b) in enumerate(original):
        inputs = layer_inputs(net, expected + pruned[layer:], rows)[layer].numpy()
        target = F.linear(layer_inputs(net, original, rows)[layer], w, b).numpy()
        ridge = damping * float(np.mean(np.mean(inputs**2, axis=0)))
        new_w = np.zeros_like(w.numpy())
        new_b = np.zeros(len(w))
        for unit in range(len(w)):
            kept = np.flatnonzero(pruned[layer][0][unit].numpy() != 0)
            design = np.hstack([inputs[:, kept], np.ones((len(rows), 1))]) / np.sqrt(len(rows))
            penalty = np.hstack([np.sqrt(ridge) * np.eye(len(kept)), np.zeros((len(kept), 1))])
            start = pruned[layer][0][unit].numpy()[kept]
            solution = np.linalg.lstsq(
                np.vstack([design, penalty]),
                np.concatenate([target[:, unit] / np.sqrt(len(rows)), np.sqrt(ridge) * start]),
                rcond=None,
            )[0]
            new_w[unit, kept], new_b[unit] = solution[:-1], solution[-1]
        expected.append((torch.as_tensor(new_w), torch.as_tensor(new_b)))
    for (w, b), (we, be) in zip(refitted, expected, strict=True):
        np.testing.assert_allclose(w.numpy(), we.numpy(), atol=1e-9)
        np.testing.assert_allclose(b.numpy(), be.numpy(), atol=1e-9)
        assert ((w == 0) >= (we == 0)).all()
    # the refit lowers every layer's output error against the original on the rows
    for layer in range(3):
        target = F.linear(layer_inputs(net, original, rows)[layer], *original[layer])
        before = F.linear(layer_inputs(net, pruned, rows)[layer], *pruned[layer])
        after = F.linear(layer_inputs(net, refitted, rows)[layer], *refitted[layer])
        assert ((after - target) ** 2).mean() < ((before - target) ** 2).mean()
    # nothing pruned: returned as given, bit for bit
    same = refit_kept_weights(net, original, original, rows)
    assert all(
        torch.equal(a, c) and torch.equal(b, d)
        for (a, b), (c, d) in zip(same, original, strict=True)
    )


def ridge_objective(inputs, target, start, kept, ridge):
    """Brute force: the least value of ``mean((a_K @ w + c - t) ** 2) + ridge * |w -
    start_K| ** 2`` over one unit's kept inputs ``K`` (numpy's least squares)."""
    n = len(inputs)
    design = np.hstack([inputs[:, kept], np.ones((n, 1))]) / np.sqrt(n)
    penalty = np.hstack([np.sqrt(ridge) * np.eye(len(kept)), np.zeros((len(kept), 1))])
    stacked = np.vstack([design, penalty])
    right = np.concatenate([target / np.sqrt(n), np.sqrt(ridge) * start[kept]])
    solution = np.linalg.lstsq(stacked, right, rcond=None)[0]
    return float(np.sum((stacked @ solution - right) ** 2))


def test_prune_and_refit_removes_the_weight_whose_loss_brute_force_finds_least():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 3))
    weights = [(w.double(), b.double()) for w, b in extract_weights(net)]
    mixing = torch.randn(6, 6, dtype=torch.float64)
    rows = torch.randn(400, 6, dtype=torch.float64) @ mixing  # correlated inputs
    damping = 1e-2
    ((pruned, _),) = prune_and_refit(net, weights, [17], rows, damping=damping)
    inputs, (w, b) = rows.numpy(), weights[0]
    target = (rows @ w.T + b).numpy()
    ridge = damping * float(np.mean(np.mean(inputs**2, axis=0)))
    # the loss each single removal adds once the unit's other weights are refitted
    increase = np.array(
        [
            [
                ridge_objective(
                    inputs, target[:, unit], w[unit].numpy(), np.delete(np.arange(6), j), ridge
                )
                - ridge_objective(inputs, target[:, unit], w[unit].numpy(), np.arange(6), ridge)
                for j in range(6)
            ]
            for unit in range(3)
        ]
    )
    assert np.array_equal(
        np.argwhere(pruned.numpy() == 0), np.argwhere(increase == increase.min())
    )


def test_prune_and_refit_keeps_each_layers_count_and_refits_its_mask():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
    weights = extract_weights(net)
    weights[1] = (weights[1][0] * (torch.rand(4, 6) > 0.3), weights[1][1])  # zeros already
    rows = torch.randn(300, 5, dtype=torch.float64)
    counts = [9, 7, 5]
    pruned = prune_and_refit(net, weights, counts, rows, rounds=3)
    assert [int((w != 0).sum()) for w, _ in pruned] == counts
    assert all(
        bool(((p == 0) >= (w == 0)).all()) for (p, _), (w, _) in zip(pruned, weights, strict=True)
    )
    # the weights kept are the least-squares refit of the mask chosen
    mask = [
        (torch.where(p != 0, w, 0.0), b) for (p, _), (w, b) in zip(pruned, weights, strict=True)
    ]
    for (p, pb), (r, rb) in zip(pruned, refit_kept_weights(net, weights, mask, rows), strict=True):
        assert torch.allclose(p, r, atol=1e-6) and torch.allclose(pb, rb, atol=1e-6)
    # a layer asked to keep more than its nonzero weights keeps those alone
    alive = int((weights[1][0] != 0).sum())
    more = prune_and_refit(net, weights, [30, 24, 8], rows)
    assert [int((w != 0).sum()) for w, _ in more] == [30, alive, 8]
    # nothing to prune: the network comes back as it was
    same = prune_and_refit(net, weights, [30, alive, 8], rows)
    assert all(
        torch.equal(a, c) and torch.equal(b_, d)
        for (a, b_), (c, d) in zip(same, weights, strict=True)
    )


def _brute_force_bound(decisions, groups, z):
    """Over every ordered pair of groups: the rate difference plus z standard errors,
    from rates with one positive and one negative added to each group."""
    best = 0.0
    for a in np.unique(groups):
        for b in np.unique(groups[groups != a]):
            pa, pb = decisions[groups == a].mean(), decisions[groups == b].mean()
            na, nb = (groups == a).sum(), (groups == b).sum()
            qa = (decisions[groups == a].sum() + 1) / (na + 2)
            qb = (decisions[groups == b].sum() + 1) / (nb + 2)
            se = math.sqrt(qa * (1 - qa) / (na + 2) + qb * (1 - qb) / (nb + 2))
            best = max(best, pa - pb + z * se)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_gap_bound_is_the_largest_pairwise_upper_bound(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, 400)
    decisions = (rng.random(400) < np.array([0.2, 0.35, 0.5])[groups]).astype(float)
    for z in (0.0, 1.0, 2.326):
        bound = tensor_selection_rate_gap_bound(
            torch.as_tensor(decisions), torch.as_tensor(groups), 3, z
        )
        assert float(bound) == pytest.approx(_brute_force_bound(decisions, groups, z))
    # a small group of rate 1/2 beside a large one of the same rate: the bound is the
    # pair's, not a group's against itself
    small = torch.cat([torch.zeros(50), torch.ones(5000)]).long()
    halves = torch.tensor([1.0, 0.0]).repeat(2525)
    expected = _brute_force_bound(halves.numpy(), small.numpy(), 2.326)
    assert float(tensor_selection_rate_gap_bound(halves, small, 2, 2.326)) == pytest.approx(
        expected
    )
    # without the errors the bound is the gap, as fairlearn measures it
    zero = tensor_selection_rate_gap_bound(
        torch.as_tensor(decisions), torch.as_tensor(groups), 3, 0
    )
    assert float(zero) == pytest.approx(
        demographic_parity_difference(np.zeros(400), decisions, sensitive_features=groups)
    )


@pytest.mark.parametrize(
    ("kind", "fairlearn_gap", "labels"),
    [
        ("demographic_parity", demographic_parity_difference, (None,)),
        ("equal_opportunity", equal_opportunity_difference, (1,)),
        ("equalized_odds", equalized_odds_difference, (0, 1)),
    ],
)
def test_parity_gap_bound_conditions_on_the_constraint_labels(kind, fairlearn_gap, labels):
    rng = np.random.default_rng(0)
    y, groups = rng.integers(0, 2, 600), rng.integers(0, 2, 600)
    decisions = (rng.random(600) < 0.25 + 0.2 * groups + 0.2 * y).astype(float)
    requirement = Fairness(4, kind=kind)
    args = (torch.as_tensor(decisions), torch.as_tensor(y), torch.as_tensor(groups), 2)
    # z = 0: fairlearn's gap
    assert float(requirement.gap_bound(*args, z=0.0)) == pytest.approx(
        fairlearn_gap(y, decisions, sensitive_features=groups)
    )
    expected = max(
        _brute_force_bound(
            decisions if label is None else decisions[y == label],
            groups if label is None else groups[y == label],
            2.326,
        )
        for label in labels
    )
    assert float(requirement.gap_bound(*args)) == pytest.approx(expected)
    # the calibration's reader of many decisions on the same rows: the same bound, bit
    # for bit, for 3 groups of which one is absent among the rows of a label
    groups = np.where((groups == 1) & (rng.random(600) < 0.5), 2, groups)
    groups[(y == 0) & (groups == 2)] = 1
    args = (torch.as_tensor(decisions).float(), torch.as_tensor(y), torch.as_tensor(groups), 3)
    for z in (0.0, 2.326, -1.96):
        reader = requirement.gap_bound_reader(*args[1:], z)
        for flip in range(3):
            chosen = args[0].roll(flip * 17)
            assert reader(chosen) == float(requirement.gap_bound(chosen, *args[1:], z))


@pytest.mark.parametrize(
    ("pruned", "joint"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_parity_exact_edit_is_affine_in_the_strength_of_its_residuals(pruned, joint):
    # a calibrated edit tries strengths on the line between the edits at 0 and 1: that
    # is only the edit at each strength if the edit is affine in it (residuals scaled,
    # forbidden columns dropped, their compensation, dense or refitted where the network
    # has zero weights, linear in them)
    from sklearn_metaedit.editing._parity import scaled_residuals
    from sklearn_metaedit.editing._requirement import input_statistics

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    module = MLP(n_features=6, hidden_sizes=(8, 8)).double()
    weights = extract_weights(module)
    if pruned:
        weights = [(w * (w.abs() > 0.2), b) for w, b in weights]
    requirement = Fairness(6, forbidden=[0, 1])
    target = 0.05
    if joint:  # data minimisation and parity at once, without sparsity
        requirement = make_requirement(["data_minimisation", "demographic_parity"], 6, [0, 1])
        target = {"data_minimisation": None, "demographic_parity": 0.05}
    requirement.set_input_statistics(*input_statistics(X))
    n_edges = sum(w.numel() for w, _ in weights)
    n_nodes = 6 + sum(b.numel() for _, b in weights)
    generator = torch.Generator().manual_seed(1)
    edit = {
        "weight_residual": 0.1 * torch.randn(n_edges, generator=generator, dtype=torch.float64),
        "bias_residual": 0.1 * torch.randn(n_nodes, generator=generator, dtype=torch.float64),
        "edge_scale": torch.ones(n_edges, dtype=torch.float64),
        "node_scale": torch.ones(n_nodes, dtype=torch.float64),
        "weight_gate": torch.zeros(n_edges, dtype=torch.float64),
        "node_gate": torch.zeros(n_nodes, dtype=torch.float64),
    }
    item = {"module": module, "weights": weights}

    def at(strength):
        scaled = scaled_residuals(edit, strength)
        return requirement.edit(item, scaled, target, hard=True, temperature=0.3)

    ends = at(0.0), at(1.0)
    for strength in (0.3, 1.7):
        for (w, b), (w0, b0), (w1, b1) in zip(at(strength), *ends, strict=True):
            torch.testing.assert_close(w, w0 + strength * (w1 - w0))
            torch.testing.assert_close(b, b0 + strength * (b1 - b0))
    first_end = ends[1][0][0]
    assert not bool(first_end[:, :2].any())  # the forbidden columns are dropped
    assert not torch.allclose(first_end, ends[0][0][0])  # and the residuals move the rest


@pytest.mark.parametrize("masks", ["shared", "per unit", "all"])
def test_refit_units_solves_each_units_ridge_system_over_its_kept_inputs(masks):
    # against numpy, unit by unit: the solution over the kept inputs (zero elsewhere) and
    # the diagonal of the inverse system (inf where an input is not kept), whether the
    # units keep the same inputs (one system) or each their own (a batch)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 7))
    gram = torch.as_tensor(a.T @ a / 200)
    rhs = torch.as_tensor(rng.normal(size=(5, 7)))
    penalty = torch.as_tensor(rng.uniform(0.01, 0.1, 7))
    kept = torch.as_tensor(rng.uniform(size=(5, 7)) < 0.6)
    if masks == "shared":
        kept = torch.tensor([True, False, True, True, False, True, True]).expand(5, 7)
    elif masks == "all":
        kept = torch.ones(5, 7, dtype=torch.bool)
    solution, diagonal = refit_units(gram, rhs, penalty, kept, inverse_diagonal=True)
    for unit in range(5):
        k = kept[unit].numpy()
        system = gram.numpy()[np.ix_(k, k)] + np.diag(penalty.numpy()[k])
        expected = np.zeros(7)
        expected[k] = np.linalg.solve(system, rhs.numpy()[unit, k])
        np.testing.assert_allclose(solution[unit].numpy(), expected, atol=1e-10)
        inverse = np.full(7, np.inf)
        inverse[k] = np.diag(np.linalg.inv(system))
        np.testing.assert_allclose(diagonal[unit].numpy(), inverse, atol=1e-10)
    assert torch.allclose(refit_units(gram, rhs, penalty, kept), solution, atol=1e-12)
