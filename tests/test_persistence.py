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
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
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


@pytest.mark.parametrize(
    ("version", "message"),
    [(2, "fit the editor again"), (4, "fit the editor again"), (99, "up to")],
)
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


# ---------------------------------------------------------------- damaged or forged files


def _payload(saved):
    objects, _ = saved
    return torch.load(objects["path"] / "editor.pt", weights_only=True)


def _load_refused(tmp_path, payload, match):
    path = tmp_path / "forged.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=match) as info:
        load_editor(path)
    assert "weights_only=False" not in str(info.value)
    return info


def test_load_editor_says_what_is_wrong_with_an_empty_or_truncated_file(saved, tmp_path):
    objects, _ = saved
    contents = (objects["path"] / "editor.pt").read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_editor(tmp_path / "empty.pt")
    for size in (10, len(contents) // 2, len(contents) - 1):
        (tmp_path / "cut.pt").write_bytes(contents[:size])
        with pytest.raises(ValueError, match="truncated or damaged") as info:
            load_editor(tmp_path / "cut.pt")
        assert "weights_only" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_editor(tmp_path / "missing.pt")


class _NotAllowed:
    """An object a weights-only load refuses to unpickle."""


def test_load_editor_never_suggests_unsafe_loading(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"format": "sklearn_metaedit.MetanetEditor", "x": _NotAllowed()}, path)
    with pytest.raises(ValueError, match="objects other than tensors") as info:
        load_editor(path)
    assert "weights_only" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("version", "match"),
    [("4", "version '4'.*integer"), (None, "version None"), (True, "version True"), (4.0, "4.0")],
)
def test_load_editor_refuses_a_version_that_is_not_an_integer(saved, tmp_path, version, match):
    payload = _payload(saved)
    payload["version"] = version
    _load_refused(tmp_path, payload, match)
    del payload["version"]
    _load_refused(tmp_path, payload, "version None")


def test_load_editor_refuses_unknown_or_missing_entries(saved, tmp_path):
    payload = _payload(saved)
    _load_refused(tmp_path, {**payload, "extra": 1}, r"unknown entries \['extra'\]")
    del payload["metanet_state"]
    _load_refused(tmp_path, payload, r"missing entries \['metanet_state'\]")


@pytest.mark.parametrize("name", ["transform", "metanet_", "requirement_", "__class__", "other_"])
def test_load_editor_sets_no_attribute_the_format_does_not_know(saved, tmp_path, name):
    payload = _payload(saved)
    payload["attributes"][name] = 5
    _load_refused(tmp_path, payload, rf"attributes a fitted editor does not have: \['{name}'\]")


def test_load_editor_checks_the_types_and_agreement_of_fitted_attributes(saved, tmp_path):
    payload = _payload(saved)
    for key, value, match in [
        ("classes_", "ab", "classes_ must be ndarray"),
        ("n_features_in_task_", 6, "disagree with the metanetwork's 5 inputs"),
        ("n_classes_", 10**9, r"n_classes_ must be an integer in \[1, 1048576\]"),
        ("task_feature_names_", ["a"], "task_feature_names_ must be 5 strings"),
        ("forbidden_features_", [7], r"forbidden_features_ must be indices in \[0, 5\)"),
        ("target_", 1.5, r"invalid target_.*\[0, 1\]"),
        ("classes_", {**payload["attributes"]["classes_"], "tensor": torch.zeros(2)}, "distinct"),
        ("settings_", {"__kind__": "dict", "items": []}, "settings_ must hold the edit's temp"),
    ]:
        forged = {**payload, "attributes": {**payload["attributes"], key: value}}
        _load_refused(tmp_path, forged, match)
    missing = {**payload, "attributes": dict(payload["attributes"])}
    del missing["attributes"]["classes_"]
    _load_refused(tmp_path, missing, r"lacks the fitted attributes \['classes_'\]")
    # transform needs settings_: a file without it would load and fail at the first edit
    del missing["attributes"]["settings_"]
    _load_refused(tmp_path, missing, r"lacks the fitted attributes \['classes_', 'settings_'\]")


@pytest.mark.parametrize(("device", "match"), [("bogus", "not a torch device"), ("cuda", "CUDA")])
def test_load_editor_names_a_device_this_machine_lacks(saved, device, match):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    objects, _ = saved
    with pytest.raises(ValueError, match=f"device=.*{match}"):
        load_editor(objects["path"] / "editor.pt", device=device)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("hidden_channels", 10**7, r"must be an integer in \[1, 1048576\], got 10000000"),
        ("hidden_channels", 64, "does not match the weights"),
        ("num_layers", 10**9, r"num_layers'\] must be an integer in \[1, 1024\]"),
        ("n_features", -1, "must be an integer"),
        ("mlp_hidden", "16", "must be an integer"),
        ("target_anchors", [0.1], "2 to 64 numbers"),
        ("extra", 1, r"unknown \['extra'\]"),
    ],
)
def test_load_editor_bounds_sizes_by_the_weights_in_the_file(saved, tmp_path, key, value, match):
    payload = _payload(saved)
    payload["metanet_params"] = {**payload["metanet_params"], key: value}
    _load_refused(tmp_path, payload, match)


def test_load_editor_validates_parameters_and_requirement_statistics(saved, tmp_path):
    payload = _payload(saved)
    params = payload["params"]
    forged = {**params, "items": [*params["items"], ("no_such_parameter", 1)]}
    _load_refused(tmp_path, {**payload, "params": forged}, r"parameters.*\['no_such_parameter'\]")
    forged = {
        **params,
        "items": [(k, -3 if k == "max_steps" else v) for k, v in params["items"]],
    }
    _load_refused(tmp_path, {**payload, "params": forged}, "invalid parameter.*max_steps")
    stats = payload["requirement_attributes"]
    forged = {**stats, "items": [*stats["items"], ("run", 1)]}
    _load_refused(
        tmp_path, {**payload, "requirement_attributes": forged}, r"requirement attributes.*run"
    )
    forged = {
        **stats,
        "items": [(k, torch.zeros(2) if k == "input_mean" else v) for k, v in stats["items"]],
    }
    _load_refused(
        tmp_path, {**payload, "requirement_attributes": forged}, r"input_mean.*shape \(5,\)"
    )
    # a covariance must be one: symmetric, no negative eigenvalue (it draws the proxy rows)
    cov = dict(stats["items"])["input_cov"]
    asymmetric = cov.clone()
    asymmetric[0, 1] += 1.0
    for bad, match in ((asymmetric, "input_cov is not symmetric"), (-cov, "negative eigen")):
        forged = {
            **stats,
            "items": [(k, bad if k == "input_cov" else v) for k, v in stats["items"]],
        }
        _load_refused(tmp_path, {**payload, "requirement_attributes": forged}, match)


def test_load_editor_drops_the_task_rows_older_files_held(saved, tmp_path):
    objects, _ = saved
    payload = _payload(saved)
    rows = torch.as_tensor(objects["X"][:80])
    payload["attributes"]["holdout_"] = (
        {"__kind__": "ndarray", "tensor": rows},
        {"__kind__": "ndarray", "tensor": torch.zeros(80)},
        None,
    )
    torch.save(payload, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="holds holdout_.*not loaded"):
        editor = load_editor(tmp_path / "old.pt")
    assert not hasattr(editor, "holdout_")
    save_editor(editor, tmp_path / "resaved.pt")
    assert "holdout_" not in torch.load(tmp_path / "resaved.pt", weights_only=True)["attributes"]


# ---------------------------------------------------------------- pickles carry the version


@pytest.mark.parametrize("name", ["editor", "layer", "online"])
def test_pickles_carry_the_package_version_and_load_quietly_in_it(saved, name):
    import pickle
    import warnings

    import sklearn_metaedit
    from sklearn_metaedit._pickle_version import VERSION_KEY

    objects, _ = saved
    obj = objects[name]
    assert obj.__getstate__()[VERSION_KEY] == sklearn_metaedit.__version__
    assert VERSION_KEY not in vars(obj)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(pickle.dumps(obj))
    assert VERSION_KEY not in vars(loaded)
    assert type(loaded) is type(obj)


@pytest.mark.parametrize("name", ["editor", "layer", "online"])
def test_a_pickle_of_another_version_warns_when_loaded(saved, monkeypatch, name):
    import pickle

    from sklearn.exceptions import InconsistentVersionWarning as SklearnWarning

    import sklearn_metaedit
    from sklearn_metaedit import _pickle_version
    from sklearn_metaedit._pickle_version import VERSION_KEY, InconsistentVersionWarning

    objects, _ = saved
    obj = objects[name]
    with monkeypatch.context() as patch:
        patch.setattr(_pickle_version, "__version__", "0.0.1")
        blob = pickle.dumps(obj)
    with pytest.warns(InconsistentVersionWarning, match="from sklearn_metaedit 0.0.1") as record:
        pickle.loads(blob)
    warning = record[0].message
    assert isinstance(warning, SklearnWarning)
    assert (warning.original_version, warning.current_version) == (
        "0.0.1",
        sklearn_metaedit.__version__,
    )
    assert type(obj).__name__ in str(warning)
    # a pickle from before versions were stamped warns too
    state = obj.__getstate__()
    del state[VERSION_KEY]
    with pytest.warns(InconsistentVersionWarning, match="did not record"):
        type(obj).__new__(type(obj)).__setstate__(state)


def test_a_pipeline_of_editors_saves_and_loads_as_a_pipeline(saved, tmp_path):
    objects, _ = saved
    X, y, population = objects["X"], objects["y"], objects["population"]
    pipeline = Pipeline(
        [
            ("minimise", MetanetEditor("data_minimisation", features=[1], max_steps=2)),
            ("prune", MetanetEditor("sparsity", target=0.5, max_steps=2, random_state=0)),
        ]
    ).fit(population, minimise__data=(X, y), prune__data=(X, y))
    save_editor(pipeline, tmp_path / "pipeline.pt")
    loaded = load_editor(tmp_path / "pipeline.pt")
    assert isinstance(loaded, Pipeline) and [n for n, _ in loaded.steps] == ["minimise", "prune"]
    for a, b in zip(loaded.transform(population), pipeline.transform(population), strict=True):
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    # the file is weights and values only, like an editor's
    payload = torch.load(tmp_path / "pipeline.pt", weights_only=True)
    assert payload["format"] == "sklearn_metaedit.Pipeline"
    # what is not a fitted Pipeline of editors is refused, naming the reason
    with pytest.raises(TypeError, match=r"the steps \['scale'\] are not"):
        save_editor(Pipeline([("scale", StandardScaler())]), tmp_path / "x.pt")
    with pytest.raises(NotFittedError):
        save_editor(Pipeline([("prune", MetanetEditor())]), tmp_path / "x.pt")
    payload["steps"][1]["name"] = "minimise"
    torch.save(payload, tmp_path / "twice.pt")
    with pytest.raises(ValueError, match="two steps have the same name"):
        load_editor(tmp_path / "twice.pt")
    payload["steps"][1] = {"name": "prune", "editor": {"format": "other"}}
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match=r"step 'prune'.*not a MetanetEditor file"):
        load_editor(tmp_path / "damaged.pt")
