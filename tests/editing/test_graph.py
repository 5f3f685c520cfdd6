import copy

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from torch import nn
from torch.nn import functional as F
from torch_geometric.data import Batch

from sklearn_metaedit import MLP
from sklearn_metaedit.editing._graph import (
    HIDDEN,
    INPUT,
    OUTPUT,
    as_sequential,
    clone_module,
    extract_weights,
    graph_to_weights,
    layer_inputs,
    load_weights,
    network_forward,
    weights_to_graph,
)


def _mlp(n_features=5, hidden=(7, 3), n_classes=2, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return MLP(n_features, hidden_sizes=hidden, n_classes=n_classes).to(dtype)


@pytest.mark.parametrize("hidden", [(), (4,), (7, 3), (6, 6, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_to_graph_to_weights_is_exact(hidden, dtype):
    weights = extract_weights(_mlp(hidden=hidden, dtype=dtype))
    back = graph_to_weights(weights_to_graph(weights))
    assert len(back) == len(weights)
    for (w, b), (w2, b2) in zip(weights, back, strict=True):
        assert w2.dtype == dtype
        assert torch.equal(w, w2) and torch.equal(b, b2)


def test_graph_has_a_node_per_neuron_and_an_edge_per_weight():
    module = _mlp(n_features=5, hidden=(7, 3), n_classes=4)
    graph = weights_to_graph(extract_weights(module))
    assert graph.num_nodes == 5 + 7 + 3 + 4
    n_weights = 5 * 7 + 7 * 3 + 3 * 4
    # sparse edge list: one column per weight, nothing of size N x N
    assert graph.edge_index.shape == (2, n_weights)
    assert graph.edge_weight.shape == (n_weights,)
    source_layer = graph.node_layer[graph.edge_index[0]]
    target_layer = graph.node_layer[graph.edge_index[1]]
    assert torch.equal(target_layer, source_layer + 1)
    assert torch.equal(graph.edge_layer, target_layer)
    # the weight on edge (j -> i) of layer 1 is W[i, j]
    W = module[0].weight.detach()
    for e in [0, 6, 17, 34]:
        j, i = graph.edge_index[:, e].tolist()
        assert graph.edge_weight[e] == W[i - 5, j]
    assert graph.node_kind.tolist() == [INPUT] * 5 + [HIDDEN] * 10 + [OUTPUT] * 4
    assert graph.node_identity[:5].tolist() == list(range(5))
    assert graph.node_identity[-4:].tolist() == list(range(4))
    assert graph.node_identity[5:15].eq(0).all()
    assert torch.equal(graph.bias[5:12], module[0].bias.detach())


def test_batch_of_different_widths_and_depths_round_trips():
    modules = [_mlp(hidden=()), _mlp(hidden=(9,), seed=1), _mlp(hidden=(4, 8, 2), seed=2)]
    weights = [extract_weights(m) for m in modules]
    batch = Batch.from_data_list([weights_to_graph(w) for w in weights])
    assert batch.num_graphs == 3
    assert batch.edge_index.shape[1] == sum(sum(w.numel() for w, _ in ws) for ws in weights)
    for i, ws in enumerate(weights):
        back = graph_to_weights(batch.get_example(i))
        assert all(
            torch.equal(w, w2) and torch.equal(b, b2)
            for (w, b), (w2, b2) in zip(ws, back, strict=True)
        )


def test_network_forward_and_load_weights_reproduce_the_module_bit_for_bit():
    module = _mlp(hidden=(6, 5)).eval()
    X = torch.randn(30, 5)
    weights = extract_weights(module)
    assert torch.equal(network_forward(module, weights, X), module(X))
    copy_ = load_weights(module, weights)
    assert copy_ is not module and torch.equal(copy_(X), module(X))


def test_as_sequential_reads_a_fitted_skorch_net():
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net = NeuralNetClassifier(
        MLP, module__n_features=5, criterion=nn.CrossEntropyLoss, max_epochs=1, verbose=0
    ).fit(X, y)
    assert as_sequential(net) is net.module_


def test_unsupported_layer_is_named_in_the_error():
    module = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm1d\) is not supported"):
        as_sequential(module)


def test_mismatched_widths_nan_weights_and_unfitted_nets_are_errors():
    with pytest.raises(ValueError, match="takes 4 inputs"):
        as_sequential(nn.Sequential(nn.Linear(3, 5), nn.Linear(4, 2)))
    module = _mlp()
    with torch.no_grad():
        module[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        as_sequential(module)
    with pytest.raises(ValueError, match="not fitted"):
        as_sequential(NeuralNetClassifier(MLP, module__n_features=3))
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        as_sequential(nn.Linear(3, 2))


def _same_copy(copied, original):
    """``copied`` is what ``copy.deepcopy(original)`` gives: same classes, same tensors
    (equal values, dtypes, requires_grad), none of them shared with the original, and the
    same forward pass."""
    assert type(copied) is type(original)
    names = [name for name, _ in original.named_modules()]
    assert [name for name, _ in copied.named_modules()] == names
    for (_, a), (_, b) in zip(copied.named_modules(), original.named_modules(), strict=True):
        assert type(a) is type(b) and a is not b
        assert a.training == b.training
    for (name, a), (name_b, b) in zip(
        copied.state_dict(keep_vars=True).items(),
        original.state_dict(keep_vars=True).items(),
        strict=True,
    ):
        assert name == name_b and type(a) is type(b)
        assert a is not b and a.data_ptr() != b.data_ptr()
        assert torch.equal(a, b) and a.dtype == b.dtype and a.requires_grad == b.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clone_module_equals_deepcopy_and_shares_nothing(dtype):
    module = _mlp(hidden=(7, 3), dtype=dtype)
    module[2].bias.requires_grad_(False)
    module.eval()
    module.register_buffer("counts", torch.arange(3))
    clone = clone_module(module)
    _same_copy(clone, module)
    _same_copy(copy.deepcopy(module), module)
    X = torch.randn(4, 5, dtype=dtype)
    assert torch.equal(clone(X), module(X))
    # writing into the copy leaves the original as it was
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    clone.counts += 1
    clone.train()
    clone.extra = nn.Linear(2, 2)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not module.training and not hasattr(module, "extra")
    assert "extra" not in dict(module.named_children())


def test_clone_module_keeps_tied_parameters_tied():
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight
    module = nn.Sequential(first, nn.Tanh(), second)
    clone = clone_module(module)
    assert clone[0].weight is clone[2].weight
    assert clone[0].weight is not first.weight
    assert len(list(clone.parameters())) == len(list(copy.deepcopy(module).parameters())) == 3


def test_clone_module_falls_back_to_deepcopy_for_hooks_and_mutable_attributes():
    calls = []

    def hook(_module, _inputs, output):
        calls.append(output.shape)

    hooked = _mlp()
    hooked.register_forward_hook(hook)
    clone = clone_module(hooked)
    clone(torch.randn(2, 5))
    assert calls == [torch.Size([2, 2])]  # the hook came along, as with deepcopy
    calls.clear()

    tagged = _mlp()
    tagged.notes = ["trained on 2024 data"]
    clone = clone_module(tagged)
    clone.notes.append("edited")
    assert tagged.notes == ["trained on 2024 data"]  # a copy, not the same list
    _same_copy(clone, tagged)


def test_a_forward_from_the_first_layers_output_is_the_forward_from_the_rows():
    torch.manual_seed(0)
    net = MLP(5, hidden_sizes=(7, 4))
    weights = extract_weights(net)
    X = torch.randn(64, 5)
    first = torch.nn.functional.linear(X, *weights[0])
    assert torch.equal(network_forward(net, weights, X, first), network_forward(net, weights, X))
    # the first layer's weights are not read when its output is given
    zeroed = [(torch.zeros_like(weights[0][0]), weights[0][1]), *weights[1:]]
    assert torch.equal(network_forward(net, zeroed, X, first), network_forward(net, weights, X))


def test_network_forward_leaves_its_inputs_as_they_were_unless_told_they_are_scratch():
    # without gradients, ReLUs act in place on what the pass made; X and a first output
    # the caller passes are read only, unless the caller says it made it for this pass
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    weights = extract_weights(net)
    X = torch.randn(30, 5)
    first = F.linear(X, *weights[0])
    X_before, first_before = X.clone(), first.clone()
    with torch.no_grad():
        expected = net(X)
        plain = network_forward(net, weights, X)
        given = network_forward(net, weights, X, first)
        assert torch.equal(X, X_before) and torch.equal(first, first_before)
        scratch = network_forward(net, weights, X, first, scratch=True)
    for logits in (plain, given, scratch):
        assert torch.allclose(logits, expected, atol=1e-6)
    assert (first >= 0).all()  # the scratch output was overwritten by the ReLU
    # an in-place activation before the first layer acts on a copy of X
    leading = nn.Sequential(nn.ReLU(inplace=True), *net)
    with torch.no_grad():
        logits = network_forward(leading, weights, X)
        assert torch.equal(X, X_before)
        assert torch.allclose(logits, net(X.relu()), atol=1e-6)


def test_layer_inputs_up_to_a_layer_are_the_first_of_all_of_them():
    # the inputs of the layers up to ``upto`` are those of the whole pass, the ReLUs in
    # place included, and the later layers are not computed (their weights not read)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    weights = extract_weights(net)
    X = torch.randn(20, 5)
    with torch.no_grad():
        every = layer_inputs(net, weights, X)
        assert len(every) == 3 and torch.equal(every[0], X)
        assert torch.allclose(every[1], F.relu(F.linear(X, *weights[0])))
        for upto in range(3):
            # weights of the layers from ``upto`` on are not read: NaN changes nothing
            poisoned = weights[:upto] + [
                (torch.full_like(w, torch.nan), b) for w, b in weights[upto:]
            ]
            some = layer_inputs(net, poisoned, X, upto=upto)
            assert len(some) == upto + 1
            assert all(torch.equal(a, b) for a, b in zip(some, every, strict=False))
