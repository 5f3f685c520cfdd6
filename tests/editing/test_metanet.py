import torch
from torch_geometric.data import Batch

from sklearn_metaedit import MLP
from sklearn_metaedit.editing._graph import extract_weights, weights_to_graph
from sklearn_metaedit.editing._metanet import GraphMetanetwork, unbatch_edit


def permute_hidden(module, generator):
    """A copy of an MLP whose hidden neurons are shuffled; returns it and the permutations."""
    weights = extract_weights(module)
    perms = [torch.randperm(w.shape[0], generator=generator) for w, _ in weights[:-1]]
    permuted = []
    for layer, (w, b) in enumerate(weights):
        if layer > 0:
            w = w[:, perms[layer - 1]]
        if layer < len(perms):
            w, b = w[perms[layer]], b[perms[layer]]
        permuted.append((w, b))
    return permuted, perms


def randomised_metanet(n_features, n_classes, seed=0):
    torch.manual_seed(seed)
    metanet = GraphMetanetwork(
        n_features, n_classes, hidden_channels=8, num_layers=2, mlp_hidden=16
    )
    # the heads start at zero; give them weights so the test sees a non-trivial edit
    for head in (metanet.edge_head, metanet.node_head):
        torch.nn.init.normal_(head[-1].weight)
        torch.nn.init.normal_(head[-1].bias)
    return metanet.eval()


def test_zero_initialised_heads_propose_the_identity_edit():
    torch.manual_seed(0)
    graph = weights_to_graph(extract_weights(MLP(6, hidden_sizes=(5, 4), n_classes=3)))
    out = GraphMetanetwork(6, 3)(graph, torch.tensor([0.3]))
    for key in ("weight_gate", "weight_residual", "bias_residual", "node_gate"):
        assert torch.count_nonzero(out[key]) == 0


def test_metanetwork_is_equivariant_to_permuting_hidden_neurons():
    torch.manual_seed(1)
    module = MLP(5, hidden_sizes=(7, 6), n_classes=2)
    weights = extract_weights(module)
    permuted, perms = permute_hidden(module, torch.Generator().manual_seed(3))
    metanet = randomised_metanet(5, 2)
    with torch.no_grad():
        out = metanet(weights_to_graph(weights), torch.tensor([0.5]))
        out_p = metanet(weights_to_graph(permuted), torch.tensor([0.5]))
    sizes = (5, 7, 6, 2)
    # node outputs: hidden layer l of the permuted net holds the original's perm[l] order
    offsets = [0, 5, 12, 18, 20]
    node_map = torch.arange(20)
    for layer, perm in enumerate(perms, start=1):
        node_map[offsets[layer] : offsets[layer + 1]] = perm + offsets[layer]
    for key in ("bias_residual", "node_gate"):
        assert torch.allclose(out_p[key], out[key][node_map], atol=1e-5)
    # edge outputs: permuted weight (i, j) of layer l = original (perm_l[i], perm_{l-1}[j])
    edge_start = 0
    for layer in range(3):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        rows = perms[layer] if layer < 2 else torch.arange(n_out)
        cols = perms[layer - 1] if layer > 0 else torch.arange(n_in)
        for key in ("weight_gate", "weight_residual"):
            original = out[key][edge_start : edge_start + n_in * n_out].reshape(n_out, n_in)
            permuted_out = out_p[key][edge_start : edge_start + n_in * n_out].reshape(n_out, n_in)
            assert torch.allclose(permuted_out, original[rows][:, cols], atol=1e-5)
        edge_start += n_in * n_out
    assert float(out["weight_residual"].detach().abs().max()) > 0.1


def test_batched_pass_equals_one_pass_per_network():
    torch.manual_seed(2)
    graphs = [
        weights_to_graph(extract_weights(MLP(4, hidden_sizes=h, n_classes=2)))
        for h in [(3,), (8, 5), ()]
    ]
    metanet = randomised_metanet(4, 2)
    targets = torch.tensor([0.2, 0.5, 0.9])
    with torch.no_grad():
        batched = unbatch_edit(metanet(Batch.from_data_list(graphs), targets), graphs)
        for graph, target, edit in zip(graphs, targets, batched, strict=True):
            alone = metanet(graph, target[None])
            for key in ("weight_gate", "weight_residual", "bias_residual", "node_gate"):
                assert torch.allclose(edit[key], alone[key], atol=1e-5)


def test_target_is_an_input_of_the_metanetwork():
    torch.manual_seed(4)
    graph = weights_to_graph(extract_weights(MLP(4, hidden_sizes=(6,))))
    metanet = randomised_metanet(4, 2)
    with torch.no_grad():
        low = metanet(graph, torch.tensor([0.1]))["weight_gate"]
        high = metanet(graph, torch.tensor([0.9]))["weight_gate"]
    assert not torch.allclose(low, high)


def test_anchor_weights_interpolate_linearly_between_the_two_anchors_around_a_target():
    metanet = GraphMetanetwork(3, 2, hidden_channels=4, target_anchors=[0.5, 0.8, 0.9, 0.95])
    targets = torch.tensor([0.3, 0.5, 0.65, 0.8, 0.86, 0.95, 0.99])
    weights = metanet.anchor_weights(targets)
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],  # below the range: the first anchor's output
            [1.0, 0.0, 0.0, 0.0],
            [0.5, 0.5, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.4, 0.6, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],  # beyond it: the last anchor's
        ]
    )
    assert torch.allclose(weights, expected, atol=1e-5)


def test_anchored_heads_start_at_the_identity_edit_and_read_their_own_outputs():
    graph = weights_to_graph(extract_weights(MLP(3, hidden_sizes=(4,))))
    metanet = GraphMetanetwork(3, 2, hidden_channels=8, mlp_hidden=8, target_anchors=[0.2, 0.9])
    out = metanet(graph, target=torch.tensor([0.5]))
    assert float(out["weight_residual"].detach().abs().max()) == 0.0
    assert float(out["weight_gate"].detach().abs().max()) == 0.0
    # give the second anchor's gate output a constant 1 and the first's a constant 0:
    # the gate at a target is then its interpolation weight on the second anchor
    with torch.no_grad():
        metanet.edge_head[-1].bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
    for target, gate in ((0.2, 0.0), (0.55, 0.5), (0.9, 1.0), (1.0, 1.0)):
        out = metanet(graph, target=torch.tensor([target]))
        assert torch.allclose(out["weight_gate"], torch.full_like(out["weight_gate"], gate))
        assert float(out["weight_residual"].detach().abs().max()) == 0.0


def test_target_anchors_must_increase():
    import pytest

    for anchors in ([0.5], [0.5, 0.5], [0.9, 0.5]):
        with pytest.raises(ValueError, match="increasing"):
            GraphMetanetwork(3, 2, target_anchors=anchors)
