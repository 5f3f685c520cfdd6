"""Weights-only files for fitted editors: no pickle, so loading runs no stored code.

A pickle of a fitted :class:`MetanetEditor` (``joblib.dump``) restores it whole, but
unpickling executes whatever the file says. :func:`save_editor` writes a file that
``torch.load(path, weights_only=True)`` reads: the metanetwork's ``state_dict``, the
editor's parameters and its other fitted attributes, all as tensors and plain Python
values (numpy arrays become tensors or lists, DataFrames dicts of columns).
:func:`load_editor` checks the file against the format (its entries, the fitted
attributes it may set and their types, sizes bounded by the weights it carries) and
rebuilds the editor from it; the rebuilt editor edits exactly as the saved one did.
A fitted editor keeps no task rows, so neither file nor pickle holds any.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .._device import check_device
from ._editor import MetanetEditor
from ._metanet import GraphMetanetwork
from ._requirements import make_requirement

__all__ = ["load_editor", "save_editor"]

#: Written into every file, checked on load. Version 3: the fairness editors read the
#: target on a log scale and ``relative_margin`` caps the margin (version 2 meant otherwise).
#: Version 4: sparsity edits of binary classifiers match the original's decision threshold
#: (a metanetwork of version 3 was trained without it). Version 5: within each layer a
#: sparsity edit chooses the weights kept by saliency, the learned logits added to it (a
#: metanetwork of version 4 learned logits for a choice by score alone).
FORMAT = "sklearn_metaedit.MetanetEditor"
#: A Pipeline of editors: its steps' names, each with one editor's entries.
PIPELINE_FORMAT = "sklearn_metaedit.Pipeline"
VERSION = 5

# Attributes rebuilt rather than stored: the metanetwork from its state_dict, the
# requirement from the editor's parameters (its plain attributes are stored beside).
_REBUILT = ("metanet_", "requirement_")


def _encode(value: Any, name: str) -> Any:
    """``value`` as tensors and plain Python values that ``weights_only`` loading admits."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, torch.device):
        return {"__kind__": "device", "value": str(value)}
    if isinstance(value, np.generic):
        return {"__kind__": "numpy_scalar", "value": value.item(), "dtype": value.dtype.str}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return {"__kind__": "ndarray", "tensor": torch.from_numpy(value.copy())}
        return {
            "__kind__": "ndarray",
            "items": [_encode(v, name) for v in value.ravel().tolist()],
            "shape": list(value.shape),
            "dtype": value.dtype.str,
        }
    if isinstance(value, pd.DataFrame):
        return {
            "__kind__": "DataFrame",
            "columns": [_encode(c, name) for c in value.columns],
            "values": [_encode(value[c].to_numpy(), name) for c in value.columns],
            "index": _encode(value.index.to_numpy(), name),
        }
    if isinstance(value, tuple):
        return tuple(_encode(v, name) for v in value)
    if isinstance(value, list):
        return [_encode(v, name) for v in value]
    if isinstance(value, dict):
        return {
            "__kind__": "dict",
            "items": [(_encode(k, name), _encode(v, name)) for k, v in value.items()],
        }
    raise TypeError(
        f"{name} holds a {type(value).__name__}, which a weights-only file cannot store; "
        "save the editor with joblib.dump instead."
    )


def _decode(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value["__kind__"]
    if kind == "device":
        return torch.device(value["value"])
    if kind == "numpy_scalar":
        return np.dtype(value["dtype"]).type(value["value"])
    if kind == "ndarray":
        if "tensor" in value:
            return value["tensor"].numpy().copy()
        out = np.empty(len(value["items"]), dtype=np.dtype(value["dtype"]))
        out[:] = [_decode(v) for v in value["items"]]
        return out.reshape(value["shape"])
    if kind == "DataFrame":
        columns = [_decode(c) for c in value["columns"]]
        frame = pd.DataFrame(
            {i: _decode(v) for i, v in enumerate(value["values"])},
            index=_decode(value["index"]),
        )
        frame.columns = columns
        return frame
    if kind == "dict":
        return {_decode(k): _decode(v) for k, v in value["items"]}
    raise ValueError(f"unknown entry {kind!r} in an editor file.")


def _fitted_attributes(editor: MetanetEditor) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(editor).items()
        if name.endswith("_") and not name.startswith("_") and name not in _REBUILT
    }


def _metanet_params(editor: MetanetEditor) -> dict[str, int]:
    """Keyword arguments that rebuild the editor's metanetwork architecture."""
    params = getattr(editor, "metanet_params_", None)
    if params is not None:
        return dict(params)
    metanet = editor.metanet_
    return {
        "n_features": int(metanet.n_features),
        "n_classes": int(metanet.n_classes),
        "hidden_channels": int(editor.hidden_channels),
        "num_layers": int(editor.num_layers),
        "mlp_hidden": int(editor.mlp_hidden),
        "n_node_flags": int(metanet.n_node_flags),
    }


def _editor_steps(pipeline: Pipeline) -> list[tuple[str, MetanetEditor]]:
    """The steps of a Pipeline of editors, checked: each a fitted MetanetEditor."""
    steps = list(pipeline.steps)
    others = [name for name, step in steps if not isinstance(step, MetanetEditor)]
    if not steps or others:
        raise TypeError(
            "save_editor saves a MetanetEditor or a Pipeline whose every step is one; "
            f"the steps {others} are not (save the Pipeline with joblib.dump instead)."
        )
    for _, step in steps:
        check_is_fitted(step, "metanet_")
    return steps


def _payload(editor: MetanetEditor) -> dict:
    """What an editor file holds of one fitted editor."""
    check_is_fitted(editor, "metanet_")
    unknown = sorted(set(_fitted_attributes(editor)) - set(_FITTED))
    if unknown:
        raise TypeError(
            f"the editor holds fitted attributes that the file format does not know: "
            f"{unknown}; save it with joblib.dump instead."
        )
    params = editor.get_params(deep=False)
    if isinstance(params.get("random_state"), np.random.RandomState):
        params["random_state"] = None
    return {
        "format": FORMAT,
        "version": VERSION,
        "params": _encode(params, "a parameter"),
        "metanet_params": _metanet_params(editor),
        "metanet_state": {
            key: value.detach().cpu() for key, value in editor.metanet_.state_dict().items()
        },
        "requirement_attributes": _encode(
            {k: v for k, v in vars(editor.requirement_).items() if not k.startswith("_")},
            "the editor's requirement_",
        ),
        "attributes": {
            name: _encode(value, f"the editor's {name}")
            for name, value in _fitted_attributes(editor).items()
        },
    }


def save_editor(editor: MetanetEditor | Pipeline, path: str | os.PathLike) -> None:
    """Write a fitted editor to a file that loads with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    editor : MetanetEditor or Pipeline of MetanetEditor
        A fitted editor, or a fitted Pipeline whose every step is one (its step names
        and order are kept; :func:`load_editor` gives a Pipeline back). A
        ``random_state`` that is a ``RandomState`` instance is stored as None (it only
        seeds ``fit``; editing does not use it).
    path : str or path-like
        Where to write (conventionally ``*.pt``).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the editor (or a step of the Pipeline) is not fitted.
    TypeError
        If a Pipeline has a step that is not a MetanetEditor, or a parameter or fitted
        attribute holds a value that is neither a tensor, an
        array, a DataFrame nor a plain Python value (the message names it).

    Examples
    --------
    >>> import tempfile, os, numpy as np, torch
    >>> from sklearn.datasets import make_classification
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn_metaedit import MLP, MetanetEditor, make_population
    >>> X, y = make_classification(200, 4, random_state=0)
    >>> X = X.astype(np.float32)
    >>> net = NeuralNetClassifier(MLP, module__hidden_sizes=(8,), max_epochs=2,
    ...                           criterion=torch.nn.CrossEntropyLoss, verbose=0)
    >>> population = make_population(net, X, y, n_networks=2, random_state=0)
    >>> editor = MetanetEditor("sparsity", target=0.6, max_steps=2, random_state=0)
    >>> editor = editor.fit(population, data=(X, y))
    >>> path = os.path.join(tempfile.mkdtemp(), "editor.pt")
    >>> save_editor(editor, path)
    >>> sorted(torch.load(path, weights_only=True))[:3]
    ['attributes', 'format', 'metanet_params']
    >>> edited = load_editor(path).transform(population)
    >>> reference = editor.transform(population)
    >>> all(torch.equal(a.module_[0].weight, b.module_[0].weight)
    ...     for a, b in zip(edited, reference))
    True
    """
    if isinstance(editor, Pipeline):
        steps = _editor_steps(editor)
        payload = {
            "format": PIPELINE_FORMAT,
            "version": VERSION,
            "steps": [{"name": step, "editor": _payload(one)} for step, one in steps],
        }
    else:
        payload = _payload(editor)
    torch.save(payload, path)


def load_editor(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> MetanetEditor | Pipeline:
    """Rebuild a fitted editor from a file written by :func:`save_editor`.

    The file is read with ``torch.load(weights_only=True)``: loading it executes no code
    from the file. Its contents are then checked against the format before anything is
    built from them: the entries and fitted attributes it may hold and their types, the
    parameters' constraints, and the metanetwork's sizes (compared with the weights the
    file holds, so that a file cannot make the loader allocate more than it carries).

    Parameters
    ----------
    path : str or path-like
    device : str or torch.device, default="cpu"
        Where the metanetwork goes (its ``device`` parameter is set to match).

    Returns
    -------
    editor : MetanetEditor or Pipeline of MetanetEditor
        Fitted; ``transform``, ``score`` and ``report`` give what the saved editor gave
        (a Pipeline for a file of a Pipeline, with its step names).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If ``device`` is not a torch device, or one this machine lacks (CUDA where there is
        none). If the file is empty, truncated or not an editor file, was written by another
        format version, or holds an entry or attribute the format does not know, a value
        of the wrong type, or sizes that disagree with its weights (the message says
        which).

    Warns
    -----
    UserWarning
        If the file holds ``holdout_``, task rows that editors saved by earlier versions
        kept; they are not loaded.
    """
    # before reading, so that a device this machine lacks is named as such, not met as
    # torch's error once the metanetwork is built
    device = check_device(device)
    name = repr(os.fspath(path))
    payload = _read(path, name)
    if isinstance(payload, dict) and payload.get("format") == PIPELINE_FORMAT:
        return Pipeline(
            [
                (step_name, _build(editor_payload, f"{name} (step {step_name!r})", device))
                for step_name, editor_payload in _checked_steps(payload, name)
            ]
        )
    return _build(payload, name, device)


def _build(payload: Any, name: str, device: torch.device) -> MetanetEditor:
    """A fitted editor from one editor's entries of a file, checked first."""
    _check_header(payload, name)
    try:
        params = _decode(payload["params"])
        stored_requirement = _decode(payload["requirement_attributes"])
        attributes = {key: _decode(value) for key, value in _checked_attributes(payload, name)}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"{name} is a damaged editor file: {_reason(exc)}") from None
    params = _checked_params(params, name)
    metanet_params = _checked_metanet(payload["metanet_params"], payload["metanet_state"], name)
    params["device"] = str(torch.device(device))
    editor = MetanetEditor(**params)
    _check_fitted(attributes, metanet_params, name)
    for key, value in attributes.items():
        setattr(editor, key, value)
    requirement = make_requirement(
        editor.requirement, editor.n_features_in_task_, editor.forbidden_features_
    )
    vars(requirement).update(_checked_requirement(stored_requirement, requirement, name))
    if editor.target_ is not None:
        try:
            requirement.check_target(editor.target_)
        except ValueError as exc:
            raise ValueError(f"{name} holds an invalid target_: {exc}") from None
    editor.requirement_ = requirement
    metanet = GraphMetanetwork(**metanet_params)
    metanet.load_state_dict(payload["metanet_state"])
    editor.metanet_ = metanet.to(torch.device(device)).eval()
    return editor


# ---------------------------------------------------------------------- checks on load

#: Entries of an editor file.
_ENTRIES = {
    "format",
    "version",
    "params",
    "metanet_params",
    "metanet_state",
    "requirement_attributes",
    "attributes",
}

#: Largest size (features, classes, widths, node inputs) a file may give the metanetwork,
#: and most rounds of message passing; the weights in the file must match them too.
_MAX_SIZE = 2**20
_MAX_LAYERS = 1024

#: The fitted attributes a file may hold: whether it must, and what each may be.
_ARRAY = np.ndarray
_FITTED: dict[str, tuple[bool, tuple[type, ...]]] = {
    "metanet_params_": (True, (dict,)),
    "target_": (True, (type(None), int, float, np.integer, np.floating, dict)),
    "n_features_in_task_": (True, (int, np.integer)),
    "n_classes_": (True, (int, np.integer)),
    "classes_": (True, (_ARRAY,)),
    "task_feature_names_": (True, (list,)),
    "forbidden_features_": (True, (list,)),
    "groups_": (True, (type(None), _ARRAY)),
    "holdout_indices_": (False, (_ARRAY,)),
    "history_": (False, (pd.DataFrame,)),
    "selected_step_": (False, (type(None), int, np.integer)),
    "training_gain_": (False, (float, int, np.floating)),
    "fit_seconds_": (False, (float, int, np.floating)),
    # transform reads the edit's temperature from it
    "settings_": (True, (dict,)),
}

#: Attributes that editors of earlier versions saved and that are no longer loaded.
_DROPPED = {"holdout_": "task rows held out in fit, which a fitted editor no longer keeps"}


def _reason(exc: BaseException) -> str:
    # never pass on torch's advice to load with weights_only=False, which would run code
    # from the file
    text = str(exc).split("\n")[0]
    if "weights_only" in str(exc) or "Weights only load failed" in text:
        return "it holds objects other than tensors and plain values"
    return f"{type(exc).__name__}: {text[:200]}"


def _read(path: str | os.PathLike, name: str) -> Any:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no editor file at {name}.")
    if os.path.isdir(path):
        raise ValueError(f"{name} is a directory, not an editor file written by save_editor.")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{name} is empty, not an editor file written by save_editor.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a damaged file
        raise ValueError(
            f"{name} cannot be read as an editor file written by save_editor (truncated or "
            f"damaged, or another kind of file): {_reason(exc)}."
        ) from None


def _check_version(version: Any, name: str) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(
            f"{name} has format version {version!r}; an editor file's version is an integer "
            f"(this version of sklearn_metaedit reads {VERSION})."
        )
    if version < VERSION:
        raise ValueError(
            f"{name} has format version {version}, whose editor this version of "
            f"sklearn_metaedit no longer rebuilds as it edited (it reads version {VERSION}); "
            "fit the editor again and save it."
        )
    if version > VERSION:
        raise ValueError(
            f"{name} has format version {version}; this version of sklearn_metaedit reads "
            f"versions up to {VERSION}."
        )


def _check_header(payload: Any, name: str) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name} is not a MetanetEditor file written by save_editor.")
    _check_version(payload.get("version"), name)
    unknown, missing = set(payload) - _ENTRIES, _ENTRIES - set(payload)
    if unknown or missing:
        raise ValueError(
            f"{name} is not a valid editor file: "
            + "; ".join(
                part
                for part in (
                    f"unknown entries {sorted(map(str, unknown))}" if unknown else "",
                    f"missing entries {sorted(missing)}" if missing else "",
                )
                if part
            )
            + "."
        )
    for entry in ("metanet_params", "metanet_state", "attributes"):
        if not isinstance(payload[entry], dict):
            raise ValueError(f"{name}: its {entry!r} entry must be a dict.")


def _checked_steps(payload: dict, name: str) -> list[tuple[str, Any]]:
    """A Pipeline file's steps, ``(name, editor entries)``, checked for their shape (each
    editor's entries are checked when it is built)."""
    _check_version(payload.get("version"), name)
    if set(payload) != {"format", "version", "steps"}:
        raise ValueError(f"{name} is not a valid file of a Pipeline of editors.")
    steps = payload["steps"]
    if not isinstance(steps, list) or not steps or len(steps) > _MAX_LAYERS:
        raise ValueError(f"{name}: its 'steps' entry must be a non-empty list.")
    out = []
    for step in steps:
        if (
            not isinstance(step, dict)
            or set(step) != {"name", "editor"}
            or not isinstance(step["name"], str)
        ):
            raise ValueError(f"{name}: each step must hold a 'name' (str) and an 'editor'.")
        out.append((step["name"], step["editor"]))
    if len({n for n, _ in out}) != len(out):
        raise ValueError(f"{name}: two steps have the same name.")
    return out


def _checked_attributes(payload: dict, name: str) -> list[tuple[str, Any]]:
    """The file's fitted attributes that the format knows, in order, with those that
    earlier versions saved and this one drops left out (with a warning)."""
    stored = payload["attributes"]
    unknown = sorted(str(k) for k in stored if k not in _FITTED and k not in _DROPPED)
    if unknown:
        raise ValueError(
            f"{name} names attributes a fitted editor does not have: {unknown[:10]}; an "
            f"editor file holds only {sorted(_FITTED)}."
        )
    missing = sorted(k for k, (required, _) in _FITTED.items() if required and k not in stored)
    if missing:
        raise ValueError(f"{name} lacks the fitted attributes {missing}.")
    for key, why in _DROPPED.items():
        if key in stored:
            warnings.warn(
                f"{name} holds {key} ({why}); it was not loaded. Save the loaded editor "
                "again to write a file without it.",
                UserWarning,
                stacklevel=3,
            )
    return [(k, v) for k, v in stored.items() if k in _FITTED]


def _checked_params(params: Any, name: str) -> dict:
    if not isinstance(params, dict):
        raise ValueError(f"{name}: its params entry must be a dict of the editor's parameters.")
    known = set(MetanetEditor._get_param_names())
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise ValueError(f"{name} names parameters MetanetEditor does not have: {unknown}.")
    try:
        MetanetEditor(**params)._validate_params()
    except ValueError as exc:
        raise ValueError(f"{name} holds an invalid parameter: {exc}") from None
    return dict(params)


def _size(value: Any, what: str, name: str, *, low: int = 1, high: int = _MAX_SIZE) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: {what} must be an integer in [{low}, {high}], got {value!r}.")
    return value


def _checked_metanet(metanet_params: dict, state: dict, name: str) -> dict:
    """The metanetwork's architecture, checked: known keys, bounded sizes, and parameters
    whose names and shapes are exactly those of the weights in the file."""
    expected = {"n_features", "n_classes", "hidden_channels", "num_layers", "mlp_hidden"}
    allowed = expected | {"n_node_flags", "target_anchors"}
    unknown, missing = set(metanet_params) - allowed, expected - set(metanet_params)
    if unknown or missing:
        raise ValueError(
            f"{name}: metanet_params must hold {sorted(expected)} (and optionally "
            f"n_node_flags, target_anchors); unknown {sorted(map(str, unknown))}, missing "
            f"{sorted(missing)}."
        )
    for key in expected | ({"n_node_flags"} & set(metanet_params)):
        high = _MAX_LAYERS if key == "num_layers" else _MAX_SIZE
        _size(
            metanet_params[key],
            f"metanet_params[{key!r}]",
            name,
            low=0 if key == "n_node_flags" else 1,
            high=high,
        )
    anchors = metanet_params.get("target_anchors")
    if anchors is not None and (
        not isinstance(anchors, list)
        or not 2 <= len(anchors) <= 64
        or not all(isinstance(a, float | int) and not isinstance(a, bool) for a in anchors)
    ):
        raise ValueError(
            f"{name}: target_anchors must be None or 2 to 64 numbers, got {anchors!r}."
        )
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{name}: metanet_state must map parameter names to tensors.")
    # the architecture on the meta device: shapes without memory, so that sizes that
    # disagree with the file's weights are refused before anything is allocated
    try:
        with torch.device("meta"):
            shapes = {
                k: tuple(v.shape)
                for k, v in GraphMetanetwork(**metanet_params).state_dict().items()
            }
    except ValueError as exc:
        raise ValueError(f"{name}: invalid metanet_params: {exc}") from None
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != stored:
        differ = sorted(set(shapes) ^ set(stored)) or sorted(
            k for k in shapes if shapes[k] != stored[k]
        )
        raise ValueError(
            f"{name}: the metanetwork that metanet_params describe does not match the weights "
            f"in the file (first differences: {differ[:5]})."
        )
    if not all(v.is_floating_point() and torch.isfinite(v).all() for v in state.values()):
        raise ValueError(
            f"{name}: the metanetwork's weights must be finite floating-point tensors."
        )
    return dict(metanet_params)


def _check_fitted(attributes: dict, metanet_params: dict, name: str) -> None:
    """The fitted attributes agree with each other and with the metanetwork."""
    for key, (_, kinds) in _FITTED.items():
        if key in attributes and not isinstance(attributes[key], kinds):
            raise ValueError(
                f"{name}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got "
                f"{type(attributes[key]).__name__}."
            )
    n_features = _size(int(attributes["n_features_in_task_"]), "n_features_in_task_", name)
    n_classes = _size(int(attributes["n_classes_"]), "n_classes_", name)
    if (n_features, n_classes) != (metanet_params["n_features"], metanet_params["n_classes"]):
        raise ValueError(
            f"{name}: n_features_in_task_={n_features} and n_classes_={n_classes} disagree "
            f"with the metanetwork's {metanet_params['n_features']} inputs and "
            f"{metanet_params['n_classes']} classes."
        )
    if attributes["metanet_params_"] != metanet_params:
        raise ValueError(f"{name}: metanet_params_ disagrees with the file's metanet_params.")
    classes, names = attributes["classes_"], attributes["task_feature_names_"]
    if classes.ndim != 1 or len(classes) != n_classes or len(pd.unique(classes)) != n_classes:
        raise ValueError(f"{name}: classes_ must hold n_classes_={n_classes} distinct labels.")
    temperature = attributes["settings_"].get("temperature")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 < temperature < float("inf")
    ):
        raise ValueError(
            f"{name}: settings_ must hold the edit's temperature, a positive number; got "
            f"{temperature!r}."
        )
    if len(names) != n_features or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{name}: task_feature_names_ must be {n_features} strings.")
    forbidden = attributes["forbidden_features_"]
    if not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_features for i in forbidden
    ):
        raise ValueError(f"{name}: forbidden_features_ must be indices in [0, {n_features}).")
    groups = attributes["groups_"]
    if groups is not None and (groups.ndim != 1 or len(groups) > _MAX_SIZE):
        raise ValueError(f"{name}: groups_ must be None or a 1-D array of group labels.")


def _checked_requirement(stored: Any, requirement: Any, name: str) -> dict:
    """The requirement's statistics from the file; its other attributes must be what the
    editor's parameters rebuild."""
    if not isinstance(stored, dict):
        raise ValueError(f"{name}: requirement_attributes must be a dict.")
    fresh = {k: v for k, v in vars(requirement).items() if not k.startswith("_")}
    unknown = sorted(str(k) for k in stored if k not in fresh)
    if unknown:
        raise ValueError(f"{name} names requirement attributes it does not have: {unknown}.")
    d = requirement.n_features
    shapes = {"input_mean": (d,), "input_cov": (d, d)}
    for key, shape in shapes.items():
        value = stored.get(key)
        if not (
            isinstance(value, torch.Tensor)
            and tuple(value.shape) == shape
            and value.is_floating_point()
            and torch.isfinite(value).all()
        ):
            raise ValueError(
                f"{name}: the requirement's {key} must be a finite tensor of shape {shape}."
            )
    cov = stored["input_cov"].double()
    scale = float(cov.diagonal().abs().max()) if d else 0.0
    if not torch.allclose(cov, cov.T, rtol=0.0, atol=1e-9 * scale + 1e-300):
        raise ValueError(f"{name}: the requirement's input_cov is not symmetric.")
    if d and float(torch.linalg.eigvalsh(cov).min()) < -1e-9 * scale:
        raise ValueError(
            f"{name}: the requirement's input_cov is not a covariance: it has a negative "
            "eigenvalue."
        )
    for key, value in stored.items():
        if key not in shapes and fresh[key] is not None and value != fresh[key]:
            raise ValueError(
                f"{name}: the requirement's {key}={value!r} disagrees with the editor's "
                f"parameters, which give {fresh[key]!r}."
            )
    return {key: stored[key] for key in shapes}
