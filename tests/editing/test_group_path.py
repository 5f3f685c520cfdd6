"""The group-score path through a pruned network's free units (``_group_path``)."""

import pytest
import torch
from torch import nn

from sklearn_metaedit.editing import _group_path, _parity
from sklearn_metaedit.editing._graph import extract_weights, network_forward
from sklearn_metaedit.editing._requirement import MET


def _rows(n=3000, d=12, seed=0):
    torch.manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64)
    groups = (X[:, 0] + 0.8 * X[:, 3] - 0.6 * X[:, 5] + 0.5 * torch.randn(n) > 0).long()
    y = (X[:, 1] + X[:, 3] + 0.5 * groups > 0.3).long()
    return X, y, groups, 2


def _network(activation=nn.ReLU, seed=0):
    """A 12 -> 8 -> 6 -> 2 network with free units: in the first hidden layer, unit 0 is
    read by no later layer (its own weights not zero) and unit 1 reads nothing and is
    zero on every row (a dead constant one weight still reads); in the second, unit 2
    reads nothing and is a positive constant the logits read."""
    torch.manual_seed(seed)
    module = nn.Sequential(
        nn.Linear(12, 8), activation(), nn.Linear(8, 6), activation(), nn.Linear(6, 2)
    ).double()
    (w1, b1), (w2, b2), (w3, b3) = [(w.clone(), b.clone()) for w, b in extract_weights(module)]
    w1[:, 0] *= 3.0  # the network favours the group column 0 tells
    w2[:, 0] = 0  # unit 0 of the first hidden layer: no later layer reads it
    w1[1], b1[1] = 0, -5.0  # unit 1: reads nothing, zero on every row
    w2[3, 1] = 0.7  # ... and read by one weight
    w2[2], b2[2] = 0, 0.9  # unit 2 of the second: a positive constant
    w3[:, 2] = torch.tensor([0.4, -1.1], dtype=torch.float64)
    weights = [(w1, b1), (w2, b2), (w3, b3)]
    b3[1] -= _margin(module, weights, _rows()[0]).median()  # about half the rows positive
    return module, weights


def _margin(module, weights, X):
    logits = network_forward(module, weights, X)
    return logits[:, 1] - logits[:, 0]


def test_free_units_are_those_no_layer_reads_or_that_read_nothing():
    _, weights = _network()
    assert _group_path.free_units(weights) == [0, 2]
    dense = [(torch.ones(4, 3), torch.zeros(4)), (torch.ones(2, 4), torch.zeros(2))]
    assert _group_path.free_units(dense) is None


def test_the_path_leaves_the_network_at_strength_zero_and_lowers_the_favoured_group():
    module, weights = _network()
    rows = _rows()
    X, _, groups, _ = rows
    columns = torch.arange(1, 12)  # column 0 is forbidden
    start, end = _group_path.group_path_line(module, weights, rows, columns)
    # at strength 0 the network's function is unchanged: the free units were read by no
    # layer, or their constant moved into the next bias; the one weight the path adds
    # beyond the second layer's count is taken from the unit that is zero on every row
    assert torch.allclose(_margin(module, start, X), _margin(module, weights, X), atol=1e-12)
    for (w, _), (w0, _), (w1, _) in zip(weights, start, end, strict=True):
        assert int((w0 != 0).sum()) <= int((w != 0).sum())
        assert int((w1 != 0).sum()) <= int((w != 0).sum())
    changed = [
        ((w0 != 0) != (w1 != 0)).nonzero().tolist()
        for (w0, _), (w1, _) in zip(start, end, strict=True)
    ]
    assert changed == [[], [], [[1, 2]]]  # the logit's weight alone is zero at the start
    path_reads = (end[0][0][0] != 0).nonzero().flatten()
    assert 0 < len(path_reads) <= _group_path._PATH_COLUMNS
    assert 0 not in path_reads.tolist()
    # the change is affine in the columns read where the path's unit is positive, and
    # lowers the margin of the group the network favours
    change = _margin(module, end, X) - _margin(module, start, X)
    positive = X[:, path_reads] @ end[0][0][0, path_reads] + end[0][1][0] > 0
    assert positive.float().mean() > 0.99
    design = torch.cat([X[positive][:, path_reads], torch.ones(int(positive.sum()), 1)], 1)
    fit = torch.linalg.lstsq(design, change[positive, None]).solution
    assert torch.allclose(design @ fit, change[positive, None], atol=1e-9)
    favoured = (_margin(module, weights, X) > 0).double()
    assert favoured[groups == 1].mean() > favoured[groups == 0].mean()
    assert change[groups == 1].mean() < change[groups == 0].mean()
    assert change.mean() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "case", ["tanh", "leading tanh", "three groups", "dense", "constant groups"]
)
def test_no_path_where_none_carries_the_score(case):
    module, weights = _network(nn.Tanh if case == "tanh" else nn.ReLU)
    if case == "leading tanh":  # the first layer reads an activation of the columns
        module = nn.Sequential(nn.Tanh(), *module)
    X, y, groups, n_groups = _rows()
    if case == "three groups":
        n_groups = 3
    if case == "dense":
        weights = [(w + (w == 0).double(), b) for w, b in weights]
    columns = torch.arange(1, 12)
    if case == "constant groups":
        X = X.clone()
        X[:, columns] = 1.0
    assert _group_path.group_path_line(module, weights, (X, y, groups, n_groups), columns) is None


def test_the_calibrated_edit_is_the_better_line():
    # of the line the editor gives and the path's, the one meeting the goal at the
    # higher accuracy; a line that does not meet it loses to one that does
    module, weights = _network()
    rows = _rows()
    fairness = _parity.Fairness(12, [0])
    columns = torch.arange(1, 12)
    plain = [(w.clone(), b.clone()) for w, b in weights]
    plain[0][0][:, 0] = 0  # no longer reads the group's own column

    def margin_bound(w):
        positive = (_margin(module, w, rows[0]) > 0).double()
        return fairness.gap_bound(positive, *rows[1:])

    goal = 0.5 * margin_bound(plain)
    # the editor's line moves nothing: its gap stays above the goal
    found = _parity.calibrated_on_line(module, plain, plain, fairness, rows, goal)
    assert found[1].bound > goal
    chosen = _parity.calibrated_with_path(module, plain, fairness, rows, goal, found, columns)
    assert chosen[1].bound <= goal < found[1].bound
    assert margin_bound(chosen[0]) == pytest.approx(chosen[1].bound)
    # one that meets the goal at a higher accuracy than the path's is kept
    better = (found[0], found[1]._replace(bound=0.0, accuracy=1.0))
    kept = _parity.calibrated_with_path(module, plain, fairness, rows, goal, better, columns)
    assert kept is better


def test_a_path_reads_no_column_an_earlier_minimisation_dropped():
    module, weights = _network()
    fairness = _parity.Fairness(12, [0])
    start = [(w.clone(), b.clone()) for w, b in weights]
    start[0][0][:, [0, 4, 7]] = 0
    assert fairness.path_columns(module, start).tolist() == list(range(1, 12))
    setattr(module, MET, {"data_minimisation": None, "sparsity": 0.9})
    read = fairness.path_columns(module, start).tolist()
    assert read == [c for c in range(12) if c not in (0, 4, 7)]
