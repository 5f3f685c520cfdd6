"""The end-to-end refinement of exact edits, against the exact least squares it should
approach, and where it must leave an edit alone."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_metaedit import MetanetEditor
from sklearn_metaedit.editing import _refine, _sparsity
from sklearn_metaedit.editing._graph import extract_weights, network_forward
from sklearn_metaedit.editing._magnitude import magnitude_prune_weights
from sklearn_metaedit.editing._refine import _REFINING, refine_outputs, without_refinement
from sklearn_metaedit.editing._sparsity import prune_and_refit


def weights_of(net):
    return extract_weights(net.module_)


def output_error(module, weights, reference, rows):
    with torch.no_grad():
        wanted = network_forward(module, reference, rows)
        return float(((network_forward(module, weights, rows) - wanted) ** 2).mean())


def pruned_net(seed=0, sizes=(6, 3)):
    torch.manual_seed(seed)
    layers = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    module = nn.Sequential(*layers[:-1])
    original = extract_weights(module)
    generator = torch.Generator().manual_seed(seed)
    pruned = [(w * (torch.rand(w.shape, generator=generator) > 0.5), b) for w, b in original]
    return module, original, pruned


def test_one_layer_refinement_approaches_the_exact_least_squares_over_the_kept_weights():
    # one linear layer: the refinement's loss is the least squares of each output over its
    # kept inputs and a bias, which lstsq solves exactly
    module, original, pruned = pruned_net()
    rows = torch.randn(512, 6, generator=torch.Generator().manual_seed(1))
    (weight, bias), (kept, _) = original[0], pruned[0]
    targets = rows @ weight.T + bias
    exact = []
    for unit in range(weight.shape[0]):
        columns = kept[unit] != 0
        design = torch.cat([rows[:, columns], torch.ones(len(rows), 1)], 1)
        solution = torch.linalg.lstsq(design.double(), targets[:, unit : unit + 1].double())
        residual = design.double() @ solution.solution - targets[:, unit : unit + 1].double()
        exact.append(float((residual**2).mean()))
    optimum = float(np.mean(exact))
    start = output_error(module, pruned, original, rows)
    refined = refine_outputs(module, original, pruned, rows, steps=400, relative_rate=0.05)
    after = output_error(module, refined, original, rows)
    # never below the optimum (beyond float32's rounding), and within a twentieth of the
    # way from it back to where it started
    assert optimum * (1 - 1e-5) <= after < start
    assert after - optimum < 0.05 * (start - optimum)
    for (w, _), (p, _) in zip(refined, pruned, strict=True):
        assert torch.equal(w == 0, p == 0) or bool((w[p == 0] == 0).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refinement_lowers_a_layer_wise_refit_error_and_keeps_every_zero(seed):
    module, original, _ = pruned_net(seed, sizes=(8, 16, 12, 2))
    rows = torch.randn(1024, 8, generator=torch.Generator().manual_seed(seed)).double()
    counts = [int(0.3 * w.numel()) for w, _ in original]
    layer_wise = prune_and_refit(module, original, counts, rows)
    refined = refine_outputs(module, original, layer_wise, rows, steps=100, relative_rate=0.05)
    assert output_error(module, refined, original, rows) < output_error(
        module, layer_wise, original, rows
    )
    for (w, b), (s, c) in zip(refined, layer_wise, strict=True):
        assert w.dtype == s.dtype and b.dtype == c.dtype
        assert bool((w[s == 0] == 0).all())  # no weight comes back


def test_refinement_returns_the_edit_itself_where_no_step_helps_or_none_is_asked():
    module, original, pruned = pruned_net()
    rows = torch.randn(64, 6)
    # steps so large that every one raises the loss: the start is the best
    assert refine_outputs(module, original, pruned, rows, steps=5, relative_rate=1e3) is pruned
    assert refine_outputs(module, original, pruned, rows, steps=0, relative_rate=0.05) is pruned
    with without_refinement():
        same = refine_outputs(module, original, pruned, rows, steps=50, relative_rate=0.05)
    assert same is pruned
    assert _REFINING.get()  # restored on leaving


def test_checkpoint_selection_compares_edits_before_refinement_and_transform_refines(
    task, population, monkeypatch
):
    X, y = task
    states = []

    steps_taken = []

    def recorded(*args, **kwargs):
        states.append(_REFINING.get())
        steps_taken.append(kwargs["steps"])
        return refine_outputs(*args, **kwargs)

    monkeypatch.setattr(_sparsity, "refine_outputs", recorded)
    editor = MetanetEditor("sparsity", target=0.7, max_steps=4, eval_every=2, random_state=0).fit(
        population, data=(X, y)
    )
    assert states and not any(states)  # every exact edit in fit: unrefined
    states.clear()
    steps_taken.clear()
    edited = editor.transform(population[:2])
    # every refinement in transform takes its steps: 20 for each budget tried (2 to 4
    # of them), then 100 for the one kept, for each network
    assert all(states)
    assert steps_taken.count(100) == 2 and set(steps_taken) == {20, 100}
    first = steps_taken.index(100)
    assert 2 <= first <= 4 and 2 <= len(steps_taken) - first - 2 <= 4
    assert steps_taken[-1] == 100
    # the refined edit is closer to the original's outputs on the rows it refines on
    rows = editor.requirement_.proxy_rows("cpu", torch.float64)
    with without_refinement():
        unrefined = editor.transform(population[:2])
    for net, new, old in zip(population[:2], edited, unrefined, strict=True):
        module, reference = net.module_, weights_of(net)
        assert output_error(module, weights_of(new), reference, rows) < output_error(
            module, weights_of(old), reference, rows
        )


def recording_evaluator(monkeypatch, calls):
    """``_refine._evaluator`` recording, for every evaluation, its rows, the weights it
    read (a copy) and the loss it returned."""
    real = _refine._evaluator

    def recording(module, rows, wanted, weights, shapes):
        evaluate = real(module, rows, wanted, weights, shapes)

        def recorded(with_gradient):
            value, gradient = evaluate(with_gradient)
            calls.append((rows, weights.clone(), value))
            return value, gradient

        return recorded

    monkeypatch.setattr(_refine, "_evaluator", recording)


def test_the_weights_returned_are_those_of_the_least_error_along_the_steps(monkeypatch):
    module, original, _ = pruned_net(3, sizes=(6, 10, 2))
    rows = torch.randn(300, 6, generator=torch.Generator().manual_seed(3))
    counts = [int(0.4 * w.numel()) for w, _ in original]
    start = prune_and_refit(module, original, counts, rows)
    calls = []
    recording_evaluator(monkeypatch, calls)
    refined = refine_outputs(module, original, start, rows, steps=30, relative_rate=0.2)
    assert len(calls) == 31  # the start, then one per step
    losses = [value for _, _, value in calls]
    assert losses[0] > min(losses)
    # each loss is the error of the weights it was computed on, not of the next step's
    assert losses[0] == pytest.approx(output_error(module, start, original, rows), rel=1e-5)
    assert output_error(module, refined, original, rows) == pytest.approx(min(losses), rel=1e-5)
    best = calls[int(np.argmin(losses))][1]
    assert torch.equal(torch.cat([torch.cat([w.reshape(-1), b]) for w, b in refined]), best)


def test_the_loss_returned_is_that_of_the_weights_returned(monkeypatch):
    module, original, _ = pruned_net(3, sizes=(6, 10, 2))
    rows = torch.randn(300, 6, generator=torch.Generator().manual_seed(3))
    start = prune_and_refit(module, original, [int(0.4 * w.numel()) for w, _ in original], rows)
    refined, loss = refine_outputs(
        module, original, start, rows, steps=30, relative_rate=0.2, return_loss=True
    )
    assert loss == pytest.approx(output_error(module, refined, original, rows), rel=1e-5)
    assert loss < output_error(module, start, original, rows)
    # where every step raises the loss, the start's
    same, loss = refine_outputs(
        module, original, start, rows, steps=5, relative_rate=1e3, return_loss=True
    )
    assert same is start
    assert loss == pytest.approx(output_error(module, start, original, rows), rel=1e-5)
    # no step taken, no loss
    same, loss = refine_outputs(
        module, original, start, rows, steps=0, relative_rate=0.05, return_loss=True
    )
    assert same is start and loss is None
    with without_refinement():
        same, loss = refine_outputs(
            module, original, start, rows, steps=5, relative_rate=0.05, return_loss=True
        )
    assert same is start and loss is None


def test_the_exact_edit_tries_the_curves_and_magnitude_budgets_and_training_the_top_scores(
    task, population, monkeypatch
):
    X, y = task
    editor = MetanetEditor("sparsity", target=0.8, max_steps=0, random_state=0)
    editor.fit(population, data=(X, y))
    real, budgets = _sparsity.error_budgets, []
    monkeypatch.setattr(
        _sparsity, "error_budgets", lambda *a, **k: budgets.append(real(*a, **k)) or budgets[-1]
    )
    scale = editor.requirement_.input_scale()

    def magnitude_counts(original, power):
        magnitude = magnitude_prune_weights(
            weights_of(original),
            0.8,
            input_scale=scale**power if power else None,
            protect_output=True,
        )
        return [int((w != 0).sum()) for w, _ in magnitude]

    edited = editor.transform(population)
    assert len(budgets) == len(population)
    kept = [[int((w != 0).sum()) for w, _ in weights_of(net)] for net in edited]
    # each edit keeps the curves' budgets or one of the magnitude budgets tried beside them
    for counts, original, net_counts in zip(budgets, population, kept, strict=True):
        assert net_counts in [counts] + [magnitude_counts(original, p) for p in (1.0, 0.5, 0.0)]
    assert any(c == k for c, k in zip(budgets, kept, strict=True))
    # with no choice (choice_steps 0) the curves' budgets alone
    budgets.clear()
    monkeypatch.setattr(_sparsity.Sparsity, "choice_steps", 0)
    alone = editor.transform(population)
    assert [[int((w != 0).sum()) for w, _ in weights_of(net)] for net in alone] == budgets
    # within training's checkpoint selection, and with error_budgets off and no choice,
    # the budgets are the top scores' (input-scaled magnitudes for an untrained editor),
    # and the curves are not computed
    for context in ("without_refinement", "off"):
        budgets.clear()
        if context == "off":
            monkeypatch.setattr(_sparsity.Sparsity, "error_budgets", False)
            monkeypatch.setattr(_sparsity.Sparsity, "choice_steps", 0)
            plain = editor.transform(population)
        else:
            with without_refinement():
                plain = editor.transform(population)
        assert budgets == []
        for original, net in zip(population, plain, strict=True):
            assert [int((w != 0).sum()) for w, _ in weights_of(net)] == magnitude_counts(
                original, 1.0
            )


def test_many_rows_are_subsampled_to_1024_and_a_float64_network_is_refined_in_float64(
    monkeypatch,
):
    module, original, pruned = pruned_net(4, sizes=(6, 8, 2))
    module = module.double()
    original = [(w.double(), b.double()) for w, b in original]
    pruned = [(w.double(), b.double()) for w, b in pruned]
    rows = torch.randn(3000, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    calls = []
    recording_evaluator(monkeypatch, calls)
    refined = refine_outputs(module, original, pruned, rows, steps=10, relative_rate=0.05)
    assert {(len(r), r.dtype, w.dtype) for r, w, _ in calls} == {
        (1024, torch.float64, torch.float64)
    }
    weight = refined[0][0]
    assert weight.dtype == torch.float64
    # not rounded through float32 on the way
    assert not torch.equal(weight, weight.float().double())
    again = refine_outputs(module, original, pruned, rows, steps=10, relative_rate=0.05)
    for (w, b), (w2, b2) in zip(refined, again, strict=True):
        assert torch.equal(w, w2) and torch.equal(b, b2)


ARCHITECTURES = {
    "mlp": lambda: [nn.Linear(7, 9), nn.ReLU(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 3)],
    "relu first, dropout": lambda: [
        nn.ReLU(),
        nn.Linear(7, 9),
        nn.Dropout(0.5),
        nn.ReLU(inplace=True),
        nn.Linear(9, 3),
    ],
    "two linear in a row, relu last": lambda: [
        nn.Linear(7, 9),
        nn.Linear(9, 5),
        nn.Identity(),
        nn.ReLU(),
        nn.Linear(5, 3),
        nn.ReLU(),
    ],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_hand_written_gradient_is_autograds(name, dtype):
    torch.manual_seed(5)
    module = nn.Sequential(*ARCHITECTURES[name]()).to(dtype).eval()
    assert _refine._program(module) is not None
    weights = extract_weights(module)
    shapes = [shape for w, b in weights for shape in (w.shape, b.shape)]
    flat = torch.cat([torch.cat([w.reshape(-1), b]) for w, b in weights])
    rows = torch.randn(64, 7, dtype=dtype)
    wanted = torch.randn(64, 3, dtype=dtype)
    hand = _refine._evaluator(module, rows, wanted, flat.clone(), shapes)
    value, gradient = hand(True)
    leaf = flat.clone().requires_grad_()
    pieces = leaf.split([s.numel() for s in shapes])
    layers = [(pieces[i].view(shapes[i]), pieces[i + 1]) for i in range(0, len(pieces), 2)]
    loss = ((network_forward(module, layers, rows) - wanted) ** 2).mean()
    loss.backward()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert value == pytest.approx(float(loss.detach()), rel=tolerance)
    torch.testing.assert_close(gradient, leaf.grad, rtol=tolerance, atol=tolerance)
    assert hand(False) == (pytest.approx(value, rel=tolerance), None)
    assert torch.equal(rows, rows.clone())  # the rows are not changed in place (ReLU first)


def test_the_hand_written_pass_and_autograd_make_the_same_refinement(monkeypatch):
    module, original, pruned = pruned_net(6, sizes=(12, 16, 8, 2))
    rows = torch.randn(512, 12, generator=torch.Generator().manual_seed(6))
    by_hand = refine_outputs(module, original, pruned, rows, steps=50, relative_rate=0.05)
    monkeypatch.setattr(_refine, "_program", lambda module: None)
    by_autograd = refine_outputs(module, original, pruned, rows, steps=50, relative_rate=0.05)
    for (w, b), (u, c) in zip(by_hand, by_autograd, strict=True):
        torch.testing.assert_close(w, u, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5)


def test_a_network_of_other_activations_is_refined_by_autograd(monkeypatch):
    torch.manual_seed(7)
    module = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 2))
    assert _refine._program(module) is None
    original = extract_weights(module)
    pruned = [(w * (w.abs() > 0.2), b) for w, b in original]
    rows = torch.randn(256, 6)
    refined = refine_outputs(module, original, pruned, rows, steps=50, relative_rate=0.05)
    assert output_error(module, refined, original, rows) < output_error(
        module, pruned, original, rows
    )
    assert all(
        bool((w[p == 0] == 0).all()) for (w, _), (p, _) in zip(refined, pruned, strict=True)
    )


def test_input_columns_no_kept_weight_reads_are_left_out_of_the_steps_alone(monkeypatch):
    module, original, pruned = pruned_net(8, sizes=(10, 12, 2))
    weight = pruned[0][0].clone()
    weight[:, [1, 4, 5]] = 0.0
    pruned[0] = (weight, pruned[0][1])
    rows = torch.randn(400, 10, generator=torch.Generator().manual_seed(8))
    calls = []
    recording_evaluator(monkeypatch, calls)
    narrowed = refine_outputs(module, original, pruned, rows, steps=40, relative_rate=0.05)
    assert {r.shape[1] for r, _, _ in calls} == {7}
    assert narrowed[0][0].shape == weight.shape
    assert bool((narrowed[0][0][:, [1, 4, 5]] == 0).all())
    used_columns = _refine._used_columns
    monkeypatch.setattr(_refine, "_used_columns", lambda module, edited: None)
    whole = refine_outputs(module, original, pruned, rows, steps=40, relative_rate=0.05)
    for (w, b), (u, c) in zip(narrowed, whole, strict=True):
        torch.testing.assert_close(w, u, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5)
    # a child before the first layer that mixes the columns: every column is read
    mixing = nn.Sequential(nn.LayerNorm(10), *module)
    assert used_columns(mixing, pruned) is None
    assert used_columns(nn.Sequential(nn.ReLU(), *module), pruned).tolist() == [
        0,
        2,
        3,
        6,
        7,
        8,
        9,
    ]


def test_transform_under_inference_mode_makes_the_same_edits(task, population):
    X, y = task
    editor = MetanetEditor("sparsity", target=0.6, max_steps=0).fit(population, data=(X, y))
    plain = editor.transform(population[:2])
    with torch.inference_mode():
        inside = editor.transform(population[:2])
    for a, b in zip(plain, inside, strict=True):
        for u, v in zip(a.module_.parameters(), b.module_.parameters(), strict=True):
            assert torch.equal(u, v)
