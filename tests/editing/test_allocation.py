"""Layer budgets from the layers' error curves, against brute force and least squares
written out here."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_metaedit.editing._allocation import error_budgets, error_curves, least_error_counts
from sklearn_metaedit.editing._graph import extract_weights, network_forward
from sklearn_metaedit.editing._magnitude import magnitude_prune_weights


def mlp(seed, sizes=(7, 12, 9, 2)):
    torch.manual_seed(seed)
    layers = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def ridge(inputs, target, pull, mask, damping=1e-2):
    """Each unit's ridge least squares over its kept inputs and a bias, one solve a unit
    (the weights pulled towards ``pull``, by ``damping`` times the inputs' mean second
    moment)."""
    inputs, target, pull = inputs.double(), target.double(), pull.double()
    lam = damping * float((inputs**2).mean(0).mean())
    weight = torch.zeros(mask.shape, dtype=torch.float64)
    bias = torch.zeros(mask.shape[0], dtype=torch.float64)
    for unit in range(mask.shape[0]):
        columns = mask[unit].nonzero().flatten()
        design = torch.cat([inputs[:, columns], torch.ones(len(inputs), 1, dtype=inputs.dtype)], 1)
        system = design.T @ design / len(inputs)
        penalty = torch.full((len(columns) + 1,), lam, dtype=torch.float64)
        penalty[-1] = 0.0
        rhs = design.T @ target[:, unit] / len(inputs)
        rhs[:-1] += lam * pull[unit, columns]
        solution = torch.linalg.solve(system + torch.diag(penalty), rhs)
        weight[unit, columns] = solution[:-1]
        bias[unit] = solution[-1]
    return weight, bias


def relu_forward(weights, rows):
    """The MLP's outputs and every layer's input, written out."""
    out, inputs = rows.double(), []
    for layer, (w, b) in enumerate(weights):
        inputs.append(out)
        out = out @ w.double().T + b.double()
        if layer < len(weights) - 1:
            out = out.relu()
    return out, inputs


@pytest.mark.parametrize("seed", range(6))
def test_the_counts_are_those_of_least_total_error_among_all_that_fit(seed):
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(rng.integers(2, 5)):
        n = int(rng.integers(5, 40))
        counts = sorted(set(rng.integers(1, n, size=6).tolist()) | {n}, reverse=True)
        errors = sorted(rng.exponential(size=len(counts)).tolist())
        errors[0] = 0.0  # the full count, no error
        curves.append((counts, errors))
    n_keep = int(rng.integers(len(curves), sum(c[0] for c, _ in curves)))
    chosen = least_error_counts(curves, n_keep)
    best = min(
        (
            sum(errors[i] for (_, errors), i in zip(curves, combo, strict=True))
            for combo in itertools.product(*[range(len(c)) for c, _ in curves])
            if sum(c[i] for (c, _), i in zip(curves, combo, strict=True)) <= n_keep
        ),
    )
    assert sum(chosen) <= n_keep
    total = sum(e[c.index(k)] for (c, e), k in zip(curves, chosen, strict=True))
    assert total == pytest.approx(best, abs=1e-12)
    # fewer weights than layers: nothing fits
    assert least_error_counts(curves, len(curves) - 1) == [0] * len(curves)


def test_each_curve_prunes_the_layer_alone_by_saliency_and_refits_it_and_the_layers_after():
    module = mlp(0)
    original = extract_weights(module)
    rows = torch.randn(600, 7, generator=torch.Generator().manual_seed(1))
    n_keep = sum(w.numel() for w, _ in original) // 5
    curves = error_curves(module, original, n_keep, rows)
    wanted, inputs = relu_forward(original, rows)
    for layer, (counts, errors, pruned) in enumerate(curves):
        assert counts[0] == original[layer][0].numel() and errors[0] == 0.0
        assert counts == sorted(set(counts), reverse=True) and len(counts) > 5
        previous = original[layer][0] != 0
        for k, error, (weight, bias) in zip(counts[1:], errors[1:], pruned[1:], strict=True):
            mask = weight != 0
            assert int(mask.sum()) == k
            assert not (mask & ~previous).any()  # each count removes from the one before
            previous = mask
            # the kept weights are the ridge least squares over them, on the layer's
            # inputs in the original network
            target = inputs[layer] @ original[layer][0].double().T + original[layer][1].double()
            w, b = ridge(inputs[layer], target, original[layer][0], mask)
            assert torch.allclose(weight.double(), w, atol=2e-4, rtol=1e-3)
            assert torch.allclose(bias.double(), b, atol=2e-4, rtol=1e-3)
            # the error: the network with this layer pruned and each layer after it
            # refitted to its original outputs on its new inputs
            out = inputs[layer] @ w.T + b
            for after in range(layer + 1, len(original)):
                given = out.relu()
                target = inputs[after] @ original[after][0].double().T
                target = target + original[after][1].double()
                w, b = ridge(given, target, original[after][0], original[after][0] != 0)
                out = given @ w.T + b
            assert error == pytest.approx(float(((out - wanted) ** 2).mean()), rel=2e-3)


def test_the_first_count_removes_the_weights_of_least_saliency_in_the_full_layer():
    module = mlp(1)
    original = extract_weights(module)
    rows = torch.randn(600, 7, generator=torch.Generator().manual_seed(2))
    curves = error_curves(module, original, 40, rows)
    _, inputs = relu_forward(original, rows)
    weight, bias = original[0]
    design = torch.cat([inputs[0], torch.ones(len(rows), 1, dtype=torch.float64)], 1)
    system = design.T @ design / len(rows)
    penalty = torch.full((8,), 1e-2 * float(system.diagonal()[:-1].mean()), dtype=torch.float64)
    penalty[-1] = 0.0
    inverse = torch.linalg.inv(system + torch.diag(penalty))
    target = inputs[0] @ weight.double().T + bias.double()
    rhs = target.T @ design / len(rows)
    rhs[:, :-1] += penalty[:-1] * weight.double()
    solution = rhs @ inverse
    saliency = solution[:, :-1] ** 2 / inverse.diagonal()[:-1]
    k = curves[0][0][1]
    kept = torch.zeros(saliency.numel(), dtype=torch.bool)
    kept[torch.topk(saliency.reshape(-1), k).indices] = True
    assert torch.equal(curves[0][2][1][0] != 0, kept.reshape(weight.shape))


def test_the_budgets_use_every_weight_to_keep_and_never_exceed_a_layer():
    module = mlp(2)
    original = extract_weights(module)
    rows = torch.randn(400, 7, generator=torch.Generator().manual_seed(3))
    sizes = [w.numel() for w, _ in original]
    for n_keep in (3, 10, 37, 100, 180, sum(sizes), sum(sizes) + 50):
        counts = error_budgets(module, original, n_keep, rows)
        assert sum(counts) == min(n_keep, sum(sizes))
        assert all(0 <= c <= n for c, n in zip(counts, sizes, strict=True))


def test_the_budgets_of_a_function_do_not_depend_on_how_its_weights_are_scaled():
    # scaling a ReLU layer by c and the next by 1/c leaves the function as it was, and
    # the saliencies and errors with it; magnitude ranking moves the budgets to the
    # layer of larger weights
    module = mlp(3)
    original = extract_weights(module)
    rows = torch.randn(600, 7, generator=torch.Generator().manual_seed(4))
    c = 8.0
    scaled = [(original[0][0] * c, original[0][1] * c), (original[1][0] / c, original[1][1])]
    scaled.append(original[2])
    with torch.no_grad():
        assert torch.allclose(
            network_forward(module, scaled, rows),
            network_forward(module, original, rows),
            atol=1e-5,
        )
    n_keep = sum(w.numel() for w, _ in original) // 6
    assert error_budgets(module, scaled, n_keep, rows) == error_budgets(
        module, original, n_keep, rows
    )
    n_zero = sum(w.numel() for w, _ in original) - n_keep
    target = n_zero / sum(w.numel() for w, _ in original)

    def magnitude_counts(weights):
        return [int((w != 0).sum()) for w, _ in magnitude_prune_weights(weights, target)]

    assert magnitude_counts(scaled) != magnitude_counts(original)


def test_error_budgets_beat_magnitude_budgets_on_the_rows():
    # the point of the budgets: after the same pruning within each layer, the network's
    # outputs are nearer the original's than with the budgets of magnitude ranking
    from sklearn_metaedit.editing._sparsity import prune_and_refit

    wins = 0
    for seed in range(4):
        module = mlp(10 + seed, sizes=(7, 24, 24, 3))
        original = extract_weights(module)
        # a first layer of small weights: magnitude ranking starves it
        original[0] = (original[0][0] * 0.2, original[0][1] * 0.2)
        original[1] = (original[1][0] * 5.0, original[1][1])
        rows = torch.randn(800, 7, generator=torch.Generator().manual_seed(seed))
        n = sum(w.numel() for w, _ in original)
        n_keep = n // 10
        by_error = error_budgets(module, original, n_keep, rows)
        by_size = [
            int((w != 0).sum()) for w, _ in magnitude_prune_weights(original, 1 - n_keep / n)
        ]
        with torch.no_grad():
            wanted = network_forward(module, original, rows)
            errors = [
                float(
                    (
                        (
                            network_forward(
                                module, prune_and_refit(module, original, c, rows), rows
                            )
                            - wanted
                        )
                        ** 2
                    ).mean()
                )
                for c in (by_error, by_size)
            ]
        wins += errors[0] < errors[1]
    assert wins == 4
