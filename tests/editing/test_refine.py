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

    def recorded(*args, **kwargs):
        states.append(_REFINING.get())
        return refine_outputs(*args, **kwargs)

    monkeypatch.setattr(_sparsity, "refine_outputs", recorded)
    editor = MetanetEditor("sparsity", target=0.7, max_steps=4, eval_every=2, random_state=0).fit(
        population, data=(X, y)
    )
    assert states and not any(states)  # every exact edit in fit: unrefined
    states.clear()
    edited = editor.transform(population[:2])
    assert states == [True, True]
    # the refined edit is closer to the original's outputs on the rows it refines on
    rows = editor.requirement_.proxy_rows("cpu", torch.float64)
    with without_refinement():
        unrefined = editor.transform(population[:2])
    for net, new, old in zip(population[:2], edited, unrefined, strict=True):
        module, reference = net.module_, weights_of(net)
        assert output_error(module, weights_of(new), reference, rows) < output_error(
            module, weights_of(old), reference, rows
        )


def test_the_weights_returned_are_those_of_the_least_error_along_the_steps(monkeypatch):
    module, original, _ = pruned_net(3, sizes=(6, 10, 2))
    rows = torch.randn(300, 6, generator=torch.Generator().manual_seed(3))
    counts = [int(0.4 * w.numel()) for w, _ in original]
    start = prune_and_refit(module, original, counts, rows)
    seen = []

    def recording(net, weights, X, *args, **kwargs):
        out = network_forward(net, weights, X, *args, **kwargs)
        seen.append(out.detach().clone())
        return out

    monkeypatch.setattr(_refine, "network_forward", recording)
    refined = refine_outputs(module, original, start, rows, steps=30, relative_rate=0.2)
    wanted, path = seen[0], seen[1:]  # the original's outputs, then one per step
    assert len(path) == 31
    losses = [float(((out - wanted) ** 2).mean()) for out in path]
    assert losses[0] > min(losses)
    assert output_error(module, refined, original, rows) == pytest.approx(min(losses), rel=1e-5)


def test_many_rows_are_subsampled_to_1024_and_a_float64_network_is_refined_in_float64(
    monkeypatch,
):
    module, original, pruned = pruned_net(4, sizes=(6, 8, 2))
    module = module.double()
    original = [(w.double(), b.double()) for w, b in original]
    pruned = [(w.double(), b.double()) for w, b in pruned]
    rows = torch.randn(3000, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    shapes = []

    def recording(net, weights, X, *args, **kwargs):
        shapes.append((len(X), X.dtype, weights[0][0].dtype))
        return network_forward(net, weights, X, *args, **kwargs)

    monkeypatch.setattr(_refine, "network_forward", recording)
    refined = refine_outputs(module, original, pruned, rows, steps=10, relative_rate=0.05)
    assert set(shapes) == {(1024, torch.float64, torch.float64)}
    weight = refined[0][0]
    assert weight.dtype == torch.float64
    # not rounded through float32 on the way
    assert not torch.equal(weight, weight.float().double())
    again = refine_outputs(module, original, pruned, rows, steps=10, relative_rate=0.05)
    for (w, b), (w2, b2) in zip(refined, again, strict=True):
        assert torch.equal(w, w2) and torch.equal(b, b2)


def test_transform_under_inference_mode_makes_the_same_edits(task, population):
    X, y = task
    editor = MetanetEditor("sparsity", target=0.6, max_steps=0).fit(population, data=(X, y))
    plain = editor.transform(population[:2])
    with torch.inference_mode():
        inside = editor.transform(population[:2])
    for a, b in zip(plain, inside, strict=True):
        for u, v in zip(a.module_.parameters(), b.module_.parameters(), strict=True):
            assert torch.equal(u, v)
