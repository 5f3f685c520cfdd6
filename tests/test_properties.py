"""Property tests of the parity projection and of the parameter graph's round trip.

The number of examples comes from the hypothesis profile (``tests/conftest.py``): a
quick one by default, thousands of examples with ``HYPOTHESIS_PROFILE=nightly``.
"""

import itertools

import numpy as np
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from sklearn_metaedit._mlp import ACTIVATIONS
from sklearn_metaedit.editing._graph import (
    INPUT,
    OUTPUT,
    extract_weights,
    graph_to_weights,
    load_weights,
    network_forward,
    weights_to_graph,
)
from sklearn_metaedit.fairness import project_parity, project_parity_cvxpy

scores_in_box = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)


@st.composite
def parity_problems(draw, max_rows=40, max_groups=5):
    """Scores, group codes (every group present), number of groups and epsilon."""
    n_groups = draw(st.integers(2, max_groups))
    sizes = draw(
        st.lists(st.integers(1, max_rows // n_groups), min_size=n_groups, max_size=n_groups)
    )
    groups = np.repeat(np.arange(n_groups), sizes)
    order = draw(st.permutations(range(len(groups))))
    groups = groups[list(order)]
    scores = np.array(draw(st.lists(scores_in_box, min_size=len(groups), max_size=len(groups))))
    epsilon = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.6, allow_subnormal=False)))
    return scores, groups, n_groups, epsilon


def _project(scores, groups, epsilon, n_groups):
    return project_parity(
        torch.tensor(scores, dtype=torch.float64), torch.tensor(groups), epsilon, n_groups=n_groups
    ).numpy()


def _gap(z, groups):
    means = [z[groups == g].mean() for g in np.unique(groups)]
    return max(means) - min(means)


@given(parity_problems())
def test_projection_is_feasible_in_every_example(problem):
    scores, groups, n_groups, epsilon = problem
    z = _project(scores, groups, epsilon, n_groups)
    assert np.all((z >= 0) & (z <= 1))
    assert _gap(z, groups) <= epsilon + 1e-12


@given(parity_problems(), st.floats(0.0, 1.0))
def test_projection_is_no_farther_than_any_feasible_point_tried(problem, level):
    scores, groups, n_groups, epsilon = problem
    z = _project(scores, groups, epsilon, n_groups)
    distance = np.linalg.norm(z - scores)
    # a constant vector is feasible for every epsilon; so is the projection for any
    # smaller epsilon, and the projection must beat both
    assert distance <= np.linalg.norm(level - scores) + 1e-9
    tighter = _project(scores, groups, epsilon / 2, n_groups)
    assert distance <= np.linalg.norm(tighter - scores) + 1e-9
    # projecting a feasible point returns it
    np.testing.assert_allclose(_project(z, groups, epsilon, n_groups), z, atol=1e-12)


@given(parity_problems(max_rows=12, max_groups=3))
def test_projection_equals_the_cvxpy_solution(problem):
    scores, groups, n_groups, epsilon = problem
    z = _project(scores, groups, epsilon, n_groups)
    reference = project_parity_cvxpy(scores, groups, epsilon)
    # the problem is strictly convex, so its solution is unique
    np.testing.assert_allclose(z, reference, atol=1e-6)


@st.composite
def networks(draw):
    """An nn.Sequential of Linear layers (some without bias) and activations."""
    sizes = draw(st.lists(st.integers(1, 7), min_size=2, max_size=5))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    activation = ACTIVATIONS[draw(st.sampled_from(sorted(ACTIVATIONS)))]
    layers = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1], bias=draw(st.booleans()), dtype=dtype)
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        elements = st.floats(-1e3, 1e3, width=32 if dtype == torch.float32 else 64)
        with torch.no_grad():
            linear.weight.copy_(
                torch.from_numpy(
                    draw(hnp.arrays(np_dtype, (sizes[i + 1], sizes[i]), elements=elements))
                )
            )
            if linear.bias is not None:
                linear.bias.copy_(
                    torch.from_numpy(draw(hnp.arrays(np_dtype, sizes[i + 1], elements=elements)))
                )
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(activation())
            if draw(st.booleans()):
                layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers), sizes


@given(networks())
def test_graph_round_trip_is_exact(network):
    module, sizes = network
    weights = extract_weights(module)
    graph = weights_to_graph(weights)
    assert graph.num_nodes == sum(sizes)
    assert graph.edge_index.shape == (2, sum(a * b for a, b in itertools.pairwise(sizes)))
    assert int((graph.node_kind == INPUT).sum()) == sizes[0]
    assert int((graph.node_kind == OUTPUT).sum()) == sizes[-1]
    back = graph_to_weights(graph)
    assert len(back) == len(weights)
    for (w, b), (w2, b2) in zip(weights, back, strict=True):
        assert w2.dtype == w.dtype and torch.equal(w, w2)
        assert torch.equal(b, b2)
    rebuilt = load_weights(module, back)
    assert rebuilt is not module
    for p, q in zip(module.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(p, q)


@given(networks(), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_network_forward_with_the_round_tripped_weights_computes_the_network(
    network, n_rows, seed
):
    module, sizes = network
    module.eval()
    X = torch.randn(n_rows, sizes[0], generator=torch.Generator().manual_seed(seed))
    X = X.to(next(module.parameters()).dtype)
    with torch.no_grad():
        expected = module(X)
        got = network_forward(
            module, graph_to_weights(weights_to_graph(extract_weights(module))), X
        )
    assume(torch.isfinite(expected).all())
    # Equal to rounding, not bit for bit: the nightly profile found a network (bias-free
    # layers, ELU, weights of +-1e3) whose logits differed from the module's own forward
    # in the last bit; network_forward takes other torch kernels than nn.Linear.
    eps = torch.finfo(expected.dtype).eps
    scale = 1.0 + float(expected.abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(got, expected, rtol=16 * eps, atol=16 * eps * scale)


@given(networks(), st.randoms(use_true_random=False))
def test_graph_of_a_network_with_permuted_hidden_neurons_is_a_relabelling(network, random):
    module, sizes = network
    assume(len(sizes) >= 3)
    weights = extract_weights(module)
    # permute the neurons of the first hidden layer: rows of layer 1, columns of layer 2
    perm = torch.tensor(random.sample(range(sizes[1]), sizes[1]))
    permuted = [
        (weights[0][0][perm], weights[0][1][perm]),
        (weights[1][0][:, perm], weights[1][1]),
    ]
    permuted += weights[2:]
    graph, graph_p = weights_to_graph(weights), weights_to_graph(permuted)

    # same multiset of (source kind, target kind, weight) edges and of node biases
    def edges(g):
        kinds = g.node_layer
        return sorted(
            zip(
                kinds[g.edge_index[0]].tolist(),
                kinds[g.edge_index[1]].tolist(),
                g.edge_weight.tolist(),
                strict=True,
            )
        )

    assert edges(graph) == edges(graph_p)
    assert sorted(graph.bias.tolist()) == sorted(graph_p.bias.tolist())
    assert torch.equal(graph.node_identity, graph_p.node_identity)
