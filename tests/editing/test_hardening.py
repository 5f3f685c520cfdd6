"""What a fitted editor keeps, how it behaves under threads, and its answer to bad inputs.

- A fitted editor, its pickle and its weights-only file hold weights and statistics,
  never a row of the task data, its labels or its sensitive features.
- Fits with a ``random_state`` are reproducible in threads (no global RNG state), and
  threads may share one fitted editor.
- Task labels are mapped to the networks' own classes, never re-derived from ``y``.
- Bad inputs are a ``ValueError`` that names the problem.
"""

import copy
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from sklearn_metaedit import MLP, MetanetEditor, TaskData, make_population, save_editor

from .conftest import make_net

FAST = dict(max_steps=3, hidden_channels=8, mlp_hidden=16, num_layers=1, random_state=0)


# ---------------------------------------------------------------- no task rows kept


def _arrays(value, seen=None):
    """Every array (numpy array, tensor, DataFrame column, list of scalars) reachable
    from ``value`` through attributes, containers and modules."""
    seen = set() if seen is None else seen
    if id(value) in seen or value is None or isinstance(value, str | bytes | int | float):
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield value.detach().cpu().numpy()
    elif isinstance(value, np.ndarray):
        yield value
        if value.dtype == object:
            for item in value.ravel():
                yield from _arrays(item, seen)
    elif isinstance(value, pd.DataFrame | pd.Series):
        yield from _arrays(value.to_numpy(), seen)
        yield from _arrays(value.index.to_numpy(), seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _arrays(key, seen)
            yield from _arrays(item, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if items and all(isinstance(v, str | int | float | np.generic) for v in items):
            yield np.asarray(items)
        for item in items:
            yield from _arrays(item, seen)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield from _arrays(vars(value), seen)


def _assert_no_task_rows(obj, X, y, groups):
    n_rows = len(X)
    rows = {row.tobytes() for row in X}
    labels = set(groups.tolist())
    found = list(_arrays(obj))
    assert found, "the walk found no arrays at all"
    for array in found:
        # no array is as long as the task data in any dimension (rows, labels, groups)
        assert n_rows not in array.shape, array.shape
        # no row of X, in any array of X's width
        if array.ndim == 2 and array.shape[1] == X.shape[1] and array.dtype.kind == "f":
            stored = {row.tobytes() for row in array.astype(X.dtype)}
            assert not stored & rows
        # sensitive labels appear only as the set of groups, never one per row
        if array.ndim == 1 and len(array) and set(array.tolist()) <= labels:
            assert len(array) <= len(labels), array
    np.testing.assert_equal(len(y), n_rows)


@pytest.fixture(scope="module")
def fitted_fair_editor(task, population):
    X, y = task
    groups = np.where(X[:, 0] > 0, "group-a", "group-b")
    editor = MetanetEditor("demographic_parity", target=0.1, **FAST)
    return editor.fit(population, data=TaskData(X, y, groups)), groups


def test_fitted_editor_and_its_pickle_hold_no_task_rows_labels_or_groups(task, fitted_fair_editor):
    X, y = task
    editor, groups = fitted_fair_editor
    assert not hasattr(editor, "holdout_")
    _assert_no_task_rows(editor, X, y, groups)
    blob = pickle.dumps(editor)
    _assert_no_task_rows(pickle.loads(blob), X, y, groups)
    # nor any stretch of the raw rows or labels in the bytes themselves
    assert not any(row.tobytes() in blob for row in X[::7])
    assert y.tobytes() not in blob and y[: len(y) // 5].tobytes() not in blob


def test_saved_editor_file_holds_no_task_rows_labels_or_groups(task, fitted_fair_editor, tmp_path):
    X, y = task
    editor, groups = fitted_fair_editor
    path = tmp_path / "editor.pt"
    save_editor(editor, path)
    _assert_no_task_rows(torch.load(path, weights_only=True), X, y, groups)
    contents = path.read_bytes()
    assert not any(row.tobytes() in contents for row in X[::7])
    assert y[: len(y) // 5].tobytes() not in contents


def test_score_and_report_without_data_say_that_data_is_needed(task, population):
    X, y = task
    editor = MetanetEditor("sparsity", target=0.5, **FAST).fit(population, data=(X, y))
    for method in (editor.score, editor.report):
        with pytest.raises(ValueError, match=r"needs data=.*keeps no task rows"):
            method(population)
    # the held-out positions index the caller's own rows: scoring on them needs no
    # copy inside the editor
    rows = editor.holdout_indices_
    assert rows.dtype.kind == "i" and rows.max() < len(X)
    assert 0 <= editor.score(population, data=(X[rows], y[rows])) <= 1


# ---------------------------------------------------------------- threads


def _state(editor):
    return {k: v.clone() for k, v in editor.metanet_.state_dict().items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fits_in_four_threads_equal_a_serial_fit_while_others_draw_from_torch(task, population):
    X, y = task
    params = dict(FAST, max_steps=4, random_state=0)

    def fit(_):
        return _state(MetanetEditor("sparsity", target=0.6, **params).fit(population, data=(X, y)))

    serial = fit(None)
    # another thread draws from torch's global generator all along: a fit that seeded
    # and read the global generator would see its draws
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            torch.rand(64)

    noise = threading.Thread(target=draw)
    noise.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(fit, range(4)))
    finally:
        stop.set()
        noise.join()
    for state in threaded:
        _assert_same_state(state, serial)
    # nor does the global generator's state matter
    torch.manual_seed(12345)
    _assert_same_state(fit(None), serial)


def test_one_fitted_editor_transforms_and_reports_in_threads_as_serially(task):
    X, y = task
    groups = (X[:, 1] > 0).astype(int)
    # networks with dropout, left in training mode: editing must not depend on modes
    population = make_population(
        make_net(X.shape[1], module__dropout=0.3, max_epochs=2),
        X,
        y,
        n_networks=4,
        random_state=0,
    )
    for net in population:
        net.module_.train()
    editor = MetanetEditor("demographic_parity", target=0.1, **FAST)
    editor.fit(population, data=(X, y, groups))
    for head in (editor.metanet_.edge_head, editor.metanet_.node_head):
        nn.init.normal_(head[-1].weight, std=0.3, generator=torch.Generator().manual_seed(0))
    data = TaskData(X, y, groups)

    def run(_):
        edited = editor.transform(population)
        weights = [torch.cat([p.detach().ravel() for p in e.module_.parameters()]) for e in edited]
        return weights, editor.report(population, data=data).drop(columns="edit_seconds")

    serial_weights, serial_report = run(None)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    for weights, report in results:
        for a, b in zip(weights, serial_weights, strict=True):
            assert torch.equal(a, b)
        pd.testing.assert_frame_equal(report, serial_report)
    assert all(net.module_.training for net in population)
    assert not editor.metanet_.training


# ---------------------------------------------------------------- labels


def test_task_data_without_class_0_keeps_each_label_on_its_own_output(task, population):
    X, y = task
    only_ones = y == 1
    editor = MetanetEditor("sparsity", target=0.0, max_steps=0, random_state=0)
    editor.fit(population, data=(X[only_ones], y[only_ones]))
    np.testing.assert_array_equal(editor.classes_, [0, 1])
    report = editor.report(population, data=(X[only_ones], y[only_ones]))
    own = [(net.predict(X[only_ones]) == 1).mean() for net in population]
    np.testing.assert_allclose(report["accuracy_before"], own, atol=1e-6)
    # the identity edit keeps that accuracy: label 1 is still output 1
    np.testing.assert_allclose(report["accuracy_after"], own, atol=1e-6)


def test_task_labels_are_read_through_the_networks_string_classes(task, population):
    X, y = task
    named = []
    for net in population[:3]:
        net = copy.deepcopy(net)
        net.classes_inferred_ = np.array(["no", "yes"])
        named.append(net)
    words = np.where(y == 1, "yes", "no")
    editor = MetanetEditor("sparsity", target=0.0, max_steps=0).fit(named, data=(X, words))
    report = editor.report(named, data=(X, words))
    own = [(net.predict_proba(X).argmax(1) == y).mean() for net in named]
    np.testing.assert_allclose(report["accuracy_before"], own, atol=1e-6)
    # integer labels are not the networks' classes: a clear error, not a silent remap
    with pytest.raises(ValueError, match=r"labels \[0, 1\].*not among the networks' classes_"):
        MetanetEditor("sparsity", max_steps=0).fit(named, data=(X, y))
    with pytest.raises(ValueError, match="not among the networks' classes_"):
        editor.score(named, data=(X, y))
    # networks of one population must agree on their classes
    with pytest.raises(ValueError, match=r"network 3 predicts the classes \[0, 1\]"):
        MetanetEditor("sparsity", max_steps=0).fit([*named, population[3]], data=(X, words))
    # nor may networks of other classes be edited by this editor
    with pytest.raises(ValueError, match="fitted on networks of the classes"):
        editor.transform(population[:1])


def test_labels_outside_the_networks_classes_or_missing_are_refused(task, population):
    X, y = task
    with pytest.raises(ValueError, match=r"labels \[2\].*not among the networks' classes_"):
        MetanetEditor("sparsity", max_steps=0).fit(population, data=(X, np.where(y, 2, 0)))
    y_nan = y.astype(float)
    y_nan[5] = np.nan
    with pytest.raises(ValueError, match=r"1 missing labels.*row 5"):
        MetanetEditor("sparsity", max_steps=0).fit(population, data=(X, y_nan))
    editor = MetanetEditor("sparsity", target=0.5, max_steps=0).fit(population, data=(X, y))
    with pytest.raises(ValueError, match="missing labels"):
        editor.report(population, data=(X, y_nan))


# ---------------------------------------------------------------- bad inputs


def test_a_network_with_other_outputs_than_the_population_is_a_clear_error(task, population):
    X, y = task
    editor = MetanetEditor("sparsity", target=0.5, max_steps=0).fit(population, data=(X, y))
    three = MLP(X.shape[1], hidden_sizes=(6,), n_classes=3)
    with pytest.raises(ValueError, match=r"network 1 has 3 outputs.*fitted on networks with 2"):
        editor.transform([population[0], three])


def test_sparse_task_data_is_a_clear_error(task, population):
    X, y = task
    with pytest.raises(ValueError, match=r"sparse csr_matrix.*dense"):
        MetanetEditor("sparsity", max_steps=0).fit(population, data=(sp.csr_matrix(X), y))
    editor = MetanetEditor("sparsity", target=0.5, max_steps=0).fit(population, data=(X, y))
    with pytest.raises(ValueError, match="sparse"):
        editor.report(population, data=(sp.csr_matrix(X), y))


def test_task_data_without_rows_is_a_clear_error_not_nan(task, population):
    X, y = task
    editor = MetanetEditor("sparsity", target=0.5, max_steps=0).fit(population, data=(X, y))
    for method in (editor.report, editor.score):
        with pytest.raises(ValueError, match="no rows"):
            method(population, data=(X[:0], y[:0]))
    with pytest.raises(ValueError, match="no rows"):
        MetanetEditor("sparsity", max_steps=0).fit(population, data=(X[:0], y[:0]))


@pytest.mark.parametrize(
    ("requirement", "target", "target_range", "message"),
    [
        ("sparsity", 0.5, (0.8, 0.2), r"low <= high"),
        ("sparsity", 0.5, (0.2, 1.5), r"target_range=\(0.2, 1.5\).*in \[0, 1\], got 1.5"),
        ("sparsity", 0.5, (float("nan"), 0.5), r"in \[0, 1\], got nan"),
        ("sparsity", 0.5, (0.1, 0.2, 0.3), r"pair \(low, high\)"),
        ("demographic_parity", 0.05, (0.1, -0.2), r"target_range"),
        ("data_minimisation", 3, (2, 99), r"integer in \[1, 8\]"),
    ],
)
def test_invalid_target_range_is_refused_before_training(
    task, population, requirement, target, target_range, message
):
    X, y = task
    groups = (X[:, 0] > 0).astype(int)
    editor = MetanetEditor(requirement, target=target, target_range=target_range, max_steps=10**6)
    with pytest.raises(ValueError, match=message):
        editor.fit(population, data=(X, y, groups))
    assert not hasattr(editor, "metanet_")
