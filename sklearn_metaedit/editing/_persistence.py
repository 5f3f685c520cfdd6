"""Weights-only files for fitted editors: no pickle, so loading runs no stored code.

A pickle of a fitted :class:`MetanetEditor` (``joblib.dump``) restores it whole, but
unpickling executes whatever the file says. :func:`save_editor` writes a file that
``torch.load(path, weights_only=True)`` reads: the metanetwork's ``state_dict``, the
editor's parameters and its other fitted attributes, all as tensors and plain Python
values (numpy arrays become tensors or lists, DataFrames dicts of columns).
:func:`load_editor` rebuilds the editor from it, and the rebuilt editor edits exactly as
the saved one did.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted

from ._editor import MetanetEditor
from ._metanet import GraphMetanetwork
from ._requirements import make_requirement

__all__ = ["load_editor", "save_editor"]

#: Written into every file, checked on load. Version 3: the fairness editors read the
#: target on a log scale and ``relative_margin`` caps the margin (version 2 meant otherwise).
#: Version 4: sparsity edits of binary classifiers match the original's decision threshold
#: (a metanetwork of version 3 was trained without it).
FORMAT = "sklearn_metaedit.MetanetEditor"
VERSION = 4

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


def save_editor(editor: MetanetEditor, path: str | os.PathLike) -> None:
    """Write a fitted editor to a file that loads with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    editor : MetanetEditor
        A fitted editor. A ``random_state`` that is a ``RandomState`` instance is stored
        as None (it only seeds ``fit``; editing does not use it).
    path : str or path-like
        Where to write (conventionally ``*.pt``).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the editor is not fitted.
    TypeError
        If a parameter or fitted attribute holds a value that is neither a tensor, an
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
    check_is_fitted(editor, "metanet_")
    params = editor.get_params(deep=False)
    if isinstance(params.get("random_state"), np.random.RandomState):
        params["random_state"] = None
    payload = {
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
    torch.save(payload, path)


def load_editor(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> MetanetEditor:
    """Rebuild a fitted editor from a file written by :func:`save_editor`.

    The file is read with ``torch.load(weights_only=True)``: loading it executes no code
    from the file.

    Parameters
    ----------
    path : str or path-like
    device : str or torch.device, default="cpu"
        Where the metanetwork goes (its ``device`` parameter is set to match).

    Returns
    -------
    editor : MetanetEditor
        Fitted; ``transform``, ``score`` and ``report`` give what the saved editor gave.

    Raises
    ------
    ValueError
        If the file is not an editor file, or was written by another format version.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{os.fspath(path)!r} is not a MetanetEditor file written by save_editor."
        )
    if payload["version"] < VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has format version {payload['version']}, whose "
            f"metanetwork this version of sklearn_metaedit no longer builds (it reads "
            f"version {VERSION}); fit the editor again and save it."
        )
    if payload["version"] > VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has format version {payload['version']}; this version of "
            f"sklearn_metaedit reads versions up to {VERSION}."
        )
    params = _decode(payload["params"])
    params["device"] = str(torch.device(device))
    editor = MetanetEditor(**params)
    for name, value in payload["attributes"].items():
        setattr(editor, name, _decode(value))
    requirement = make_requirement(
        editor.requirement, editor.n_features_in_task_, editor.forbidden_features_
    )
    # the requirement's own attributes (statistics recorded in fit); a file may name
    # attributes older versions had (a requirement's target), which it no longer holds
    stored = _decode(payload["requirement_attributes"])
    vars(requirement).update({k: v for k, v in stored.items() if k in vars(requirement)})
    editor.requirement_ = requirement
    metanet = GraphMetanetwork(**payload["metanet_params"])
    metanet.load_state_dict(payload["metanet_state"])
    editor.metanet_ = metanet.to(torch.device(device)).eval()
    return editor
