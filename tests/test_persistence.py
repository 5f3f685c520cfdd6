"""Saved estimators give identical outputs when loaded in a fresh Python process.

One module-level fixture fits everything, saves it (joblib pickles, and the editor also
as a weights-only file) together with the inputs, and runs one fresh interpreter
(``sys.executable``) that loads each object and computes its outputs. Each test then
compares the fresh process's outputs with the ones the original objects give here.
"""

import os
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from skorch import NeuralNetClassifier

from sklearn_metaedit import (
    MLP,
    FairnessLayerClassifier,
    MetanetEditor,
    OnlineFairPredictor,
    load_editor,
    make_population,
    save_editor,
)
from sklearn_metaedit.datasets import make_biased_classification

FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import joblib
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from sklearn_metaedit import load_editor

    here = Path(sys.argv[1])
    X, y, groups, stream_X, stream_groups = joblib.load(here / "inputs.joblib")
    out = {}

    population = joblib.load(here / "population.joblib")
    out["population_proba"] = np.stack([net.predict_proba(X) for net in population])

    def edited_weights(editor):
        edited = editor.transform(population)
        return np.concatenate(
            [p.detach().numpy().ravel() for net in edited for p in net.module_.parameters()]
        )

    # the weights-only file must load without unpickling anything
    torch.load(here / "editor.pt", weights_only=True)
    weights_only = load_editor(here / "editor.pt")
    out["editor_weights_only_edits"] = edited_weights(weights_only)
    out["editor_weights_only_report"] = weights_only.report(population, data=(X, y, groups))[
        ["accuracy_after", "sparsity_after", "parity_gap_after"]
    ].to_numpy()
    out["editor_pickle_edits"] = edited_weights(joblib.load(here / "editor.joblib"))

    layer = joblib.load(here / "layer.joblib")
    out["layer_proba"] = layer.predict_proba(X, sensitive_features=groups)
    out["layer_predict"] = layer.predict(X, sensitive_features=groups)

    online = joblib.load(here / "online.joblib")
    out["online_continued"] = np.concatenate(
        [
            online.partial_predict(stream_X[i : i + 1],
                sensitive_features=stream_groups[i : i + 1])
            for i in range(len(stream_X))
        ]
    )
    out["online_counts"] = np.stack([online.n_decisions_, online.n_selected_])
    out["online_duals"] = np.stack([online.dual_upper_, online.dual_lower_])
    np.savez(here / "fresh.npz", **out)
    """
)


def _edited_weights(editor, population):
    edited = editor.transform(population)
    return np.concatenate(
        [p.detach().numpy().ravel() for net in edited for p in net.module_.parameters()]
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    here = tmp_path_factory.mktemp("saved")
    X, y, groups = make_biased_classification(400, 5, bias=1.0, random_state=0)
    net = NeuralNetClassifier(
        MLP,
        module__hidden_sizes=(8,),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=3,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    population = make_population(
        net,
        X,
        y,
        n_networks=4,
        param_distributions={"module__hidden_sizes": [(8,), (6, 6)]},
        random_state=0,
    )
    editor = MetanetEditor(
        "sparsity",
        target=0.6,
        # a range: the file must rebuild the anchored output heads too
        target_range=(0.4, 0.8),
        max_steps=5,
        hidden_channels=8,
        num_layers=1,
        mlp_hidden=16,
        random_state=0,
    ).fit(population, data=(X, y, groups))
    layer = FairnessLayerClassifier(net, epsilon=0.05, random_state=0).fit(
        X, y, sensitive_features=groups
    )
    online = OnlineFairPredictor(LogisticRegression(), epsilon=0.05).fit(
        X[:200], y[:200], sensitive_features=groups[:200]
    )
    # mid-stream: 100 decisions made before saving, 100 more to come
    first = online.partial_predict(X[200:300], sensitive_features=groups[200:300])
    stream_X, stream_groups = X[300:], groups[300:]

    save_editor(editor, here / "editor.pt")
    for name, obj in [
        ("population", population),
        ("editor", editor),
        ("layer", layer),
        ("online", online),
        ("inputs", (X, y, groups, stream_X, stream_groups)),
    ]:
        joblib.dump(obj, here / f"{name}.joblib")
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(here)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = dict(np.load(here / "fresh.npz"))
    objects = {
        "X": X,
        "y": y,
        "groups": groups,
        "population": population,
        "editor": editor,
        "layer": layer,
        "online": online,
        "stream": (stream_X, stream_groups),
        "first": first,
        "path": here,
    }
    return objects, fresh


def test_population_loaded_in_a_fresh_process_predicts_identically(saved):
    objects, fresh = saved
    here = np.stack([net.predict_proba(objects["X"]) for net in objects["population"]])
    np.testing.assert_array_equal(fresh["population_proba"], here)


def test_weights_only_editor_file_edits_identically_in_a_fresh_process(saved):
    objects, fresh = saved
    editor, population = objects["editor"], objects["population"]
    expected = _edited_weights(editor, population)
    # the edit is not the identity, so equal edits are a real check of the metanetwork
    original = np.concatenate(
        [p.detach().numpy().ravel() for net in population for p in net.module_.parameters()]
    )
    assert not np.array_equal(expected, original)
    np.testing.assert_array_equal(fresh["editor_weights_only_edits"], expected)
    data = (objects["X"], objects["y"], objects["groups"])
    report = editor.report(population, data=data)[
        ["accuracy_after", "sparsity_after", "parity_gap_after"]
    ]
    np.testing.assert_array_equal(fresh["editor_weights_only_report"], report.to_numpy())


def test_pickled_editor_edits_identically_in_a_fresh_process(saved):
    objects, fresh = saved
    expected = _edited_weights(objects["editor"], objects["population"])
    np.testing.assert_array_equal(fresh["editor_pickle_edits"], expected)


def test_weights_only_file_holds_only_tensors_and_plain_values(saved):
    objects, _ = saved
    payload = torch.load(objects["path"] / "editor.pt", weights_only=True)

    def leaves(value):
        if isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from leaves(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from leaves(v)
        else:
            yield value

    kinds = {type(v) for v in leaves(payload)}
    assert kinds <= {torch.Tensor, str, int, float, bool, type(None)}, kinds
    state = objects["editor"].metanet_.state_dict()
    assert set(payload["metanet_state"]) == set(state)
    for key, value in state.items():
        assert torch.equal(payload["metanet_state"][key], value)


def test_loaded_editor_keeps_every_fitted_attribute(saved):
    objects, _ = saved
    editor = objects["editor"]
    loaded = load_editor(objects["path"] / "editor.pt")
    assert loaded.get_params() == editor.get_params()
    for name, value in vars(editor).items():
        if not name.endswith("_") or name in ("metanet_", "requirement_"):
            continue
        restored = getattr(loaded, name)
        if hasattr(value, "equals"):
            assert value.equals(restored), name
        elif isinstance(value, tuple):
            for a, b in zip(value, restored, strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_equal(value, restored)
    public = {k: v for k, v in vars(editor.requirement_).items() if not k.startswith("_")}
    restored = {k: v for k, v in vars(loaded.requirement_).items() if not k.startswith("_")}
    assert public.keys() == restored.keys()
    for key, value in public.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, restored[key]), key
        else:
            assert value == restored[key], key
    assert type(loaded.requirement_) is type(editor.requirement_)


def test_fairness_layer_loaded_in_a_fresh_process_predicts_identically(saved):
    objects, fresh = saved
    layer, X, groups = objects["layer"], objects["X"], objects["groups"]
    np.testing.assert_array_equal(
        fresh["layer_proba"], layer.predict_proba(X, sensitive_features=groups)
    )
    np.testing.assert_array_equal(
        fresh["layer_predict"], layer.predict(X, sensitive_features=groups)
    )


def test_online_predictor_saved_mid_stream_continues_identically_in_a_fresh_process(saved):
    objects, fresh = saved
    online = objects["online"]
    assert int(online.n_decisions_.sum()) == 100
    stream_X, stream_groups = objects["stream"]
    continued = np.concatenate(
        [
            online.partial_predict(
                stream_X[i : i + 1], sensitive_features=stream_groups[i : i + 1]
            )
            for i in range(len(stream_X))
        ]
    )
    np.testing.assert_array_equal(fresh["online_continued"], continued)
    np.testing.assert_array_equal(
        fresh["online_counts"], np.stack([online.n_decisions_, online.n_selected_])
    )
    assert int(fresh["online_counts"][0].sum()) == 200
    np.testing.assert_array_equal(
        fresh["online_duals"], np.stack([online.dual_upper_, online.dual_lower_])
    )
    # the saved state carried the stream over: the 100 decisions before saving and the
    # 100 after are the decisions of one uninterrupted stream of the 200 rows
    whole = online.predict(objects["X"][200:], sensitive_features=objects["groups"][200:])
    np.testing.assert_array_equal(
        np.concatenate([objects["first"], fresh["online_continued"]]), whole
    )


def test_load_editor_rejects_a_file_that_is_not_an_editor(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a MetanetEditor file"):
        load_editor(path)


@pytest.mark.parametrize(("version", "message"), [(2, "fit the editor again"), (99, "up to")])
def test_load_editor_refuses_another_format_version(saved, tmp_path, version, message):
    objects, _ = saved
    payload = torch.load(objects["path"] / "editor.pt", weights_only=True)
    payload["version"] = version
    torch.save(payload, tmp_path / "editor.pt")
    with pytest.raises(ValueError, match=message):
        load_editor(tmp_path / "editor.pt")


def test_save_editor_needs_a_fitted_editor(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_editor(MetanetEditor(), tmp_path / "editor.pt")
