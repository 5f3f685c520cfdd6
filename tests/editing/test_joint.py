"""One editor, several requirements: sparsity, data minimisation and parity in one edit."""

import copy
import itertools
import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from fairlearn.metrics import demographic_parity_difference
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from sklearn_metaedit import MetanetEditor, TaskData, load_editor, make_population, save_editor
from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.demo import zero_columns
from sklearn_metaedit.editing import _joint, _parity
from sklearn_metaedit.editing._group_path import carries_path
from sklearn_metaedit.editing._measures import features_used, weight_sparsity
from sklearn_metaedit.editing._sparsity import Sparsity

from .conftest import make_net
from .test_editor import FAST, randomise_heads, weights_equal, weights_of

FORBIDDEN = [2, 5]
JOINT = ["sparsity", "data_minimisation"]


def accuracy(nets, X, y) -> float:
    return float(np.mean([(net.predict(X) == y).mean() for net in nets]))


def assert_structure(edited, originals, sparsity, forbidden):
    """Every edited network: at least ``sparsity`` of its weights zero, none of the
    ``forbidden`` features read, and no weight where the original had none."""
    for original, new in zip(originals, edited, strict=True):
        after = weights_of(new)
        n_weights = sum(w.numel() for w, _ in after)
        zeros = sum(int((w == 0).sum()) for w, _ in after)
        assert zeros >= math.ceil(sparsity * n_weights - 1e-9)
        assert not set(features_used(after)) & set(forbidden)
        for (w, _), (w0, _) in zip(after, weights_of(original), strict=True):
            assert not bool(((w != 0) & (w0 == 0)).any())


def test_joint_edit_is_exact_whatever_the_metanetwork_outputs(task, population):
    X, y = task
    editor = MetanetEditor(JOINT, target={"sparsity": 0.7}, features=FORBIDDEN, **FAST)
    editor = randomise_heads(editor.fit(population, data=(X, y)))
    assert editor.target_ == {"sparsity": 0.7, "data_minimisation": None}
    assert editor.requirement_.name == "sparsity+data_minimisation"
    assert_structure(editor.transform(population), population, 0.7, FORBIDDEN)
    # a budget of features is met too, and another sparsity at transform
    budget = MetanetEditor(
        JOINT, target={"sparsity": 0.5, "data_minimisation": 3}, features=FORBIDDEN, **FAST
    ).fit(population, data=(X, y))
    edited = budget.transform(population, target={"sparsity": 0.8, "data_minimisation": 3})
    assert_structure(edited, population, 0.8, FORBIDDEN)
    assert all(len(features_used(weights_of(net))) <= 3 for net in edited)
    report = budget.report(
        population, data=(X, y), target={"sparsity": 0.8, "data_minimisation": 3}
    )
    assert report["meets_sparsity"].all() and report["meets_data_minimisation"].all()
    assert (report["violation"] == 0).all() and (report["sparsity_after"] >= 0.8).all()


def test_joint_edit_keeps_more_than_pruning_then_zeroing_and_as_much_as_a_pipeline(
    task, population
):
    X, y = task
    data = (X, y)
    # one seed for every editor: the same rows held out, so the same input statistics
    # behind each prior (the rows drawn move an untrained edit by some 0.5 points here)
    fixed = {"max_steps": 0, "random_state": 0}
    joint = MetanetEditor(JOINT, target={"sparsity": 0.7}, features=FORBIDDEN, **fixed)
    edited = joint.fit(population, data=data).transform(population)
    assert_structure(edited, population, 0.7, FORBIDDEN)
    prune = MetanetEditor("sparsity", target=0.7, **fixed).fit(population, data=data)
    zeroed = [zero_columns(net.module_, FORBIDDEN) for net in prune.transform(population)]
    with torch.no_grad():
        zeroed_accuracy = np.mean(
            [(z(torch.as_tensor(X)).argmax(1).numpy() == y).mean() for z in zeroed]
        )
    minimise_then_prune = Pipeline(
        [
            ("minimise", MetanetEditor("data_minimisation", features=FORBIDDEN, **fixed)),
            ("prune", MetanetEditor("sparsity", target=0.7, **fixed)),
        ]
    ).fit(population, minimise__data=data, prune__data=data)
    pipeline_accuracy = accuracy(minimise_then_prune.transform(population), X, y)
    joint_accuracy = accuracy(edited, X, y)
    assert joint_accuracy > zeroed_accuracy
    assert joint_accuracy >= pipeline_accuracy - 0.005


@pytest.fixture(scope="module")
def biased():
    X, y, groups = make_biased_classification(n_samples=1200, bias=1.5, random_state=0)
    population = make_population(
        make_net(X.shape[1], module__hidden_sizes=(16, 16)),
        X,
        y,
        n_networks=6,
        random_state=0,
    )
    return X, y, groups, population


def test_joint_parity_edit_calibrated_meets_the_gap_and_the_structure(biased):
    X, y, groups, population = biased
    target = 0.05
    original_gaps = [
        demographic_parity_difference(y, net.predict(X), sensitive_features=groups)
        for net in population
    ]
    assert min(original_gaps) > 2 * target  # the constraint binds
    editor = MetanetEditor(
        ["demographic_parity", "sparsity"],
        target={"sparsity": 0.6, "demographic_parity": target},
        features=[0],
        max_steps=60,
        random_state=0,
    ).fit(population, data=TaskData(X, y, groups))
    assert editor.target_ == {"demographic_parity": target, "sparsity": 0.6}
    lines, path_line = [], _joint.group_path_line

    def spy(*args):
        lines.append(path_line(*args))
        return lines[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_joint, "group_path_line", spy)
        edited = editor.transform(population, calibration=TaskData(X, y, groups))
    # networks pruned to 0.6 keep free units: their edits are group-score paths, which
    # keep the structure as the residuals' edits do
    assert len(lines) == len(population) and any(line is not None for line in lines)
    assert_structure(edited, population, 0.6, [0])
    for net in edited:
        # the gap on the calibration rows, as fairlearn measures it
        assert demographic_parity_difference(y, net.predict(X), sensitive_features=groups) <= (
            target + 1e-9
        )
    # a path that moves nothing meets no target: the residuals' line is calibrated too
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_joint, "group_path_line", lambda module, weights, *_: (weights, weights))
        fallback = editor.transform(population, calibration=TaskData(X, y, groups))
    for net in fallback:
        assert demographic_parity_difference(y, net.predict(X), sensitive_features=groups) <= (
            target + 1e-9
        )
    # the report says each requirement's value and compliance, per network
    report = editor.report(population, data=TaskData(X, y, groups))
    assert {"meets_sparsity", "meets_demographic_parity", "requirement_gap_after"} <= set(report)
    uncalibrated = editor.transform(population)
    for net, gap, meets in zip(
        uncalibrated,
        report["requirement_gap_after"],
        report["meets_demographic_parity"],
        strict=True,
    ):
        expected = demographic_parity_difference(y, net.predict(X), sensitive_features=groups)
        assert gap == pytest.approx(expected, abs=1e-6)
        assert meets == (gap <= target)
    assert report["meets_sparsity"].all()


def test_joint_training_learns_what_the_structural_edit_leaves(biased):
    X, y, groups, population = biased
    data = TaskData(X, y, groups)
    # no feature dropped: the structural edit leaves the gap for the residuals to close
    params = dict(target={"sparsity": 0.6, "demographic_parity": 0.05})
    untrained = MetanetEditor(["sparsity", "demographic_parity"], max_steps=0, **params)
    trained = MetanetEditor(
        ["sparsity", "demographic_parity"], max_steps=200, random_state=0, **params
    )
    untrained.fit(population, data=data)
    trained.fit(population, data=data)
    # the untrained edit is the structural one alone: it leaves the parity gap
    before = untrained.report(population, data=data)["requirement_gap_after"].mean()
    after = trained.report(population, data=data)["requirement_gap_after"].mean()
    assert after < before - 0.05
    assert trained.selected_step_ > 0 and trained.training_gain_ > 0


def test_joint_targets_are_searchable_and_the_editor_saves_loads_and_pickles(
    task, population, tmp_path
):
    X, y = task
    editor = MetanetEditor(JOINT, features=FORBIDDEN, max_steps=0)
    grid = {"target": [{"sparsity": 0.5}, {"sparsity": 0.9}]}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(editor, grid, cv=KFold(2)).fit(population, data=TaskData(X, y))
    scores = pd.DataFrame(search.cv_results_)
    assert np.isfinite(scores.mean_test_score).all()
    # pruning less keeps more accuracy: the search picks it
    assert search.best_params_["target"] == {"sparsity": 0.5}
    # or each requirement's target as a parameter of its own, on a grid
    given = {"sparsity": 0.7}
    editor = MetanetEditor(JOINT, target=given, features=FORBIDDEN, max_steps=0)
    grid = {"target__sparsity": [0.5, 0.9], "target__data_minimisation": [3, 6]}
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(editor, grid, cv=KFold(2)).fit(population, data=TaskData(X, y))
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_ == {"target__sparsity": 0.5, "target__data_minimisation": 6}
    assert search.best_estimator_.target == {"sparsity": 0.5, "data_minimisation": 6}
    assert given == {"sparsity": 0.7} and editor.target is given  # nothing mutated
    with pytest.raises(ValueError, match="set entries of a dict target"):
        MetanetEditor("sparsity", target=0.5).set_params(target__sparsity=0.6)
    fitted = clone(editor).set_params(target={"sparsity": 0.8}).fit(population, data=(X, y))
    fitted = randomise_heads(fitted)
    save_editor(fitted, tmp_path / "joint.pt")
    loaded = load_editor(tmp_path / "joint.pt")
    copied = pickle.loads(pickle.dumps(fitted))
    for a, b, c in zip(
        fitted.transform(population),
        loaded.transform(population),
        copied.transform(population),
        strict=True,
    ):
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
        np.testing.assert_array_equal(a.predict_proba(X), c.predict_proba(X))
    assert loaded.target_ == {"sparsity": 0.8, "data_minimisation": None}  # the default
    assert weight_sparsity(weights_of(loaded.transform(population[:1])[0])) >= 0.8


@pytest.mark.parametrize(
    ("requirement", "params", "message"),
    [
        ([], {}, "at least one is needed"),
        (["sparsity", "pruning"], {}, r"\['pruning'\] is not"),
        (["sparsity", "sparsity"], {}, "names a requirement twice"),
        (["demographic_parity", "equal_opportunity"], {}, "at most one of each"),
        (JOINT, {"target": 0.5, "features": FORBIDDEN}, "target is a dict"),
        (JOINT, {"target": {"sparsity": 1.5}, "features": FORBIDDEN}, "must be a number in"),
        (JOINT, {"target": {"robustness": 0.1}, "features": FORBIDDEN}, "not among"),
        (JOINT, {}, r"features= .* or target=k"),
        (JOINT, {"features": FORBIDDEN, "target_range": (0.5, 0.9)}, "target_range is not"),
        (["sparsity", "demographic_parity"], {}, "needs sensitive features"),
    ],
)
def test_joint_errors_say_what_is_wrong(task, population, requirement, params, message):
    X, y = task
    with pytest.raises(ValueError, match=message):
        MetanetEditor(requirement, **params, max_steps=0).fit(population, data=(X, y))


def _crowded(network):
    """A copy of ``network`` still pruned in its first layer, with no free hidden unit:
    every weight after the first layer, and one in each first-layer row, not zero."""
    network = copy.deepcopy(network)
    with torch.no_grad():
        linears = [m for m in network.module_ if isinstance(m, torch.nn.Linear)]
        first = linears[0].weight
        first[(first == 0).all(1), 0] = 1e-3
        for layer in linears[1:]:
            layer.weight[layer.weight == 0] = 1e-3
    return network


def _pruned(biased):
    """The task data and its population pruned to 0.6 by an untrained sparsity editor,
    with the layer budgets of magnitude ranking: they leave every hidden layer a unit
    that no later layer reads (a group-score path's room), where the budgets of the
    error curves may keep a small layer whole."""
    X, y, groups, population = biased
    data = TaskData(X, y, groups)
    editor = MetanetEditor("sparsity", target=0.6, max_steps=0, random_state=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sparsity, "error_budgets", False)
        return data, population, editor.fit(population, data=data).transform(population)


def test_a_parity_editor_fitted_on_pruned_networks_says_what_that_order_costs(biased):
    data, population, pruned = _pruned(biased)
    assert all(carries_path(net.module_) for net in pruned)
    crowded = [_crowded(net) for net in pruned[:4]] + pruned[4:]
    assert not any(carries_path(net.module_) for net in crowded[:4])
    with pytest.warns(UserWarning, match=r"4 of the 6 networks are pruned.*one editor"):
        MetanetEditor("demographic_parity", max_steps=0).fit(crowded, data=data)
    # on dense networks, on pruned ones that carry a group-score path, or in an editor
    # that prunes as well, nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MetanetEditor("demographic_parity", max_steps=0).fit(population, data=data)
        MetanetEditor("demographic_parity", max_steps=0).fit(pruned, data=data)
        MetanetEditor(["sparsity", "demographic_parity"], max_steps=0).fit(crowded, data=data)


def test_a_parity_edit_of_pruned_networks_takes_the_group_path_where_it_is_better(biased):
    # pruning, then editing parity: the edits keep every zero count and read no
    # forbidden column, meet the gap bound on the calibration rows, and where the
    # group-score path is taken, the residuals' line did not meet it or was less
    # accurate there
    data, _, pruned = _pruned(biased)
    fair = MetanetEditor(
        "demographic_parity", target=0.1, features=[0], max_steps=0, random_state=0
    ).fit(pruned, data=data)
    found = []
    original = _parity.calibrated_with_path

    def spy(*args):
        chosen = original(*args)
        found.append((args[5], chosen))
        return chosen

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_parity, "calibrated_with_path", spy)
        edited = fair.transform(pruned, calibration=data)
    assert len(found) == len(pruned)
    taken = [chosen is not line for line, chosen in found]
    assert any(taken)
    for (line, chosen), was_taken in zip(found, taken, strict=True):
        assert chosen[1].bound <= 0.1
        line_met = line[1].bound <= 0.1
        assert not was_taken or not line_met or chosen[1].accuracy >= line[1].accuracy
    for before, after in zip(pruned, edited, strict=True):
        for (w, _), (w1, _) in zip(weights_of(before), weights_of(after), strict=True):
            assert int((w1 != 0).sum()) <= int((w != 0).sum())
        assert 0 not in features_used(weights_of(after))


def test_edited_networks_record_what_they_meet_and_pruning_a_parity_edit_says_so(biased):
    X, y, groups, population = biased
    data = TaskData(X, y, groups)
    assert not hasattr(population[0].module_, "metaedit_requirements")
    fair = (
        MetanetEditor("demographic_parity", target=0.05, max_steps=0)
        .fit(population, data=data)
        .transform(population)
    )
    assert all(n.module_.metaedit_requirements == {"demographic_parity": 0.05} for n in fair)
    assert not hasattr(population[0].module_, "metaedit_requirements")  # not mutated
    # in this process, a structural editor edits them before their parity edit, which
    # is made again after: nothing to warn of, and the record holds both
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruning = MetanetEditor("sparsity", target=0.6, max_steps=0).fit(fair, data=data)
        both = pruning.transform(fair)
    assert all(
        n.module_.metaedit_requirements == {"sparsity": 0.6, "demographic_parity": 0.05}
        for n in both
    )
    # networks saved and loaded lose that record of their edit (it is kept in memory)
    fair = pickle.loads(pickle.dumps(fair))
    # a structural editor fitted on them does not measure the gap it moves: it says so
    with pytest.warns(UserWarning, match=r"6 of the 6 networks were edited for demographic_par"):
        pruning = MetanetEditor("sparsity", target=0.6, max_steps=0).fit(fair, data=data)
    with pytest.warns(UserWarning, match="were edited for demographic_parity"):
        MetanetEditor(JOINT, target={"sparsity": 0.6}, features=[0], max_steps=0).fit(
            fair, data=data
        )
    # another parity constraint is not measured by an editor for this one either
    with pytest.warns(UserWarning, match=r"edited for demographic_parity.*'equalized_odds'"):
        MetanetEditor("equalized_odds", max_steps=0).fit(fair, data=data)
    # pruning drops the parity entry (it moves the gap) and says so; the record survives
    # a pickle
    with pytest.warns(UserWarning, match=r"edited for demographic_parity.*dropped from its"):
        pruned = pickle.loads(pickle.dumps(pruning.transform(fair)[0]))
    assert pruned.module_.metaedit_requirements == {"sparsity": 0.6}
    # editing parity after pruning keeps the zeros: the record grows
    refair = (
        MetanetEditor("demographic_parity", target=0.05, max_steps=0)
        .fit([pruned], data=data)
        .transform([pruned])[0]
    )
    assert refair.module_.metaedit_requirements == {"sparsity": 0.6, "demographic_parity": 0.05}
    # an editor that measures the gap, and networks no editor made, are not flagged
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MetanetEditor("demographic_parity", max_steps=0).fit(fair, data=data)
        MetanetEditor(["data_minimisation", "demographic_parity"], features=[0], max_steps=0).fit(
            fair, data=data
        )
        MetanetEditor("sparsity", target=0.6, max_steps=0).fit(population, data=data)


def test_pipelines_of_editors_make_their_edits_in_one_order_whatever_theirs(biased):
    X, y, groups, population = biased
    data = TaskData(X, y, groups)
    fixed = {"max_steps": 0, "random_state": 0}
    editors = {
        "S": MetanetEditor("sparsity", target=0.6, **fixed),
        "M": MetanetEditor("data_minimisation", features=[1], **fixed),
        "P": MetanetEditor("demographic_parity", target=0.05, features=[0], **fixed),
    }
    for letters in ("SP", "MP", "SMP"):
        edits = []
        for order in itertools.permutations(letters):
            pipe = Pipeline([(k, clone(editors[k])) for k in order])
            with warnings.catch_warnings():
                # nothing edits a network edited for parity without measuring its gap
                warnings.filterwarnings("error", "(?s).*edited for demographic_parity")
                pipe.fit(population, **{f"{k}__data": data for k in order})
                edits.append(pipe.transform(population))
        # minimisation, then sparsity, then parity, whatever the Pipeline's order
        expected = population
        for k in sorted(letters, key="MSP".index):
            expected = editors[k].fit(expected, data=data).transform(expected)
        for edited in edits:
            assert all(map(weights_equal, edited, expected)), letters
        met = expected[0].module_.metaedit_requirements
        assert "demographic_parity" in met and len(met) == len(letters)
    # the parity edit made again is calibrated on the rows it was given
    fair, prune = editors["P"], editors["S"]
    calibrated = prune.transform(fair.transform(population, calibration=data))
    expected = fair.transform(prune.transform(population), calibration=data)
    assert all(map(weights_equal, calibrated, expected))
    assert not all(map(weights_equal, calibrated, fair.transform(prune.transform(population))))


def test_a_network_changed_since_its_edit_is_edited_as_it_is_and_says_so(biased):
    X, y, groups, population = biased
    data = TaskData(X, y, groups)
    fixed = {"max_steps": 0, "random_state": 0}
    prune = MetanetEditor("sparsity", target=0.6, **fixed).fit(population, data=data)
    minimise = MetanetEditor("data_minimisation", features=[1], **fixed).fit(population, data=data)
    pruned = prune.transform(population[:2])
    stale = r"2 of the networks were changed since an editor edited them"
    # trained further after the pruning: its new weights are edited, not its source's
    with torch.no_grad():
        for net in pruned:
            net.module_[0].weight.mul_(0.5)
    saved = pickle.loads(pickle.dumps(pruned))  # no record: edited as it is
    with pytest.warns(UserWarning, match=stale):
        edited = minimise.transform(pruned)
    assert all(map(weights_equal, edited, minimise.transform(saved)))
    # the record is dropped: no second warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        minimise.transform(pruned)
    # the pruning editor fitted again since: its new state does not stand for the old
    pruned = prune.transform(population[:2])
    prune.fit(population, data=data)
    with pytest.warns(UserWarning, match=stale):
        edited = minimise.transform(pruned)
    saved = pickle.loads(pickle.dumps(pruned))
    assert all(map(weights_equal, edited, minimise.transform(saved)))
    # a joint editor for minimisation and parity comes after sparsity: both orders agree
    joint = MetanetEditor(
        ["data_minimisation", "demographic_parity"], features=[0, 1], **fixed
    ).fit(population, data=data)
    first = prune.transform(joint.transform(population[:2], calibration=data))
    second = joint.transform(prune.transform(population[:2]), calibration=data)
    assert all(map(weights_equal, first, second))
    assert all("demographic_parity" in n.module_.metaedit_requirements for n in first)
