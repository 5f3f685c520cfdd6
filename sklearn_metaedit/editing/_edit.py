"""One metanetwork pass: networks in, edited weights out, and edited copies of the networks.

A network is *prepared* once (its weights, its parameter graph and the metanetwork's
node inputs); several prepared networks then share one batched metanetwork pass, whose
edit of each is the same as alone. The requirement turns the pass's output into edited
weights (:meth:`~._requirement.Requirement.apply`, then
:meth:`~._requirement.Requirement.recalibrate`).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from ._graph import Weights, extract_weights, load_weights, weights_to_graph
from ._metanet import GraphMetanetwork, unbatch_edit
from ._parity import _MAX_STRENGTH
from ._requirement import MET, Requirement, recorded

__all__ = ["N_INPUT_FLAGS", "edit_networks", "edited_copy", "prepare_network"]

#: Node inputs of the metanetwork that describe the task's input features.
N_INPUT_FLAGS = 2


def _input_flags(requirement: Requirement, n_nodes: int) -> torch.Tensor:
    """Per node: the mean and standard deviation of its input feature (input nodes,
    which come first in a parameter graph), zeros for the other neurons."""
    flags = torch.zeros(n_nodes, N_INPUT_FLAGS)
    flags[: requirement.n_features, 0] = requirement.input_mean.float()
    flags[: requirement.n_features, 1] = requirement.input_scale()
    return flags


def prepare_network(
    module: nn.Sequential,
    requirement: Requirement,
    device: torch.device,
    rows: torch.Tensor | None = None,
) -> dict[str, Any]:
    """A network as the metanetwork reads it; ``rows``, where given, are the rows its
    exact edit refits on in place of the proxy rows
    (:meth:`~._requirement.Requirement.refit_rows`).

    Returns
    -------
    item : dict
        ``module`` (the network), ``weights`` (its (weight, bias) pairs on ``device``),
        ``graph`` (its parameter graph) and ``flags`` (node inputs of shape
        (n_nodes, requirement.n_node_flags + N_INPUT_FLAGS)); ``rows`` where given.
    """
    weights = [(w.to(device), b.to(device)) for w, b in extract_weights(module)]
    graph = weights_to_graph(weights)
    flags = torch.cat(
        [requirement.node_flags(graph.layer_sizes), _input_flags(requirement, graph.num_nodes)],
        dim=1,
    ).to(device)
    item = {"module": module, "weights": weights, "graph": graph, "flags": flags}
    return item if rows is None else {**item, "rows": rows}


def edit_networks(
    metanet: GraphMetanetwork,
    requirement: Requirement,
    items: list[dict[str, Any]],
    targets: list,
    *,
    hard: bool,
    temperature: float,
    calibration: tuple | None = None,
) -> list[Weights]:
    """Edited weights of several prepared networks from one batched metanetwork pass.

    ``hard=True``: the requirement's exact step (edit time, checkpoint selection);
    ``hard=False``: its soft relaxation, differentiable in the metanetwork (training).
    ``calibration``: task rows ``(X, y, groups, n_groups)`` (tensors) on which the
    requirement sets each exact edit's strength
    (:meth:`~._requirement.Requirement.calibrated_edit`).
    """
    graphs = [item["graph"] for item in items]
    batch = graphs[0] if len(graphs) == 1 else Batch.from_data_list(graphs)
    device = items[0]["flags"].device
    target_in = torch.tensor([requirement.metanet_target(t) for t in targets], device=device)
    flags = torch.cat([item["flags"] for item in items])
    edits = unbatch_edit(metanet(batch, target_in, flags), graphs)
    if calibration is not None:
        edited = [
            requirement.calibrated_edit(item, edit, target, calibration, temperature=temperature)
            for item, edit, target in zip(items, edits, targets, strict=True)
        ]
        warn_unmet_calibration(items, len(calibration[0]))
        return edited
    return [
        requirement.edit(item, edit, target, hard=hard, temperature=temperature)
        for item, edit, target in zip(items, edits, targets, strict=True)
    ]


#: A calibrated edit within this much of the accuracy of one decision for every row (on
#: the calibration rows) is said to have met its target by (nearly) constant decisions.
_CONSTANT_MARGIN = 0.01


def warn_unmet_calibration(items: list[dict[str, Any]], n_rows: int) -> None:
    """Warn where a calibrated edit (``item["calibrated"]``, a
    :class:`~._parity.Calibrated`) did not bring the gap's upper confidence bound on the
    ``n_rows`` calibration rows within the target, saying what fell short at the
    strength of least bound: the edit, where the gap itself is above the target there,
    else the number of rows; and where an edit is no more accurate on the rows than one
    decision for every row (within :data:`_CONSTANT_MARGIN`), met or not."""
    results = [item["calibrated"] for item in items if "calibrated" in item]
    unmet = [result for result in results if result.bound > result.target]
    constant = [r for r in results if r.accuracy <= r.majority + _CONSTANT_MARGIN]
    if constant:
        warnings.warn(
            f"calibration: on {len(constant)} of {len(items)} networks the calibrated edit "
            "is no more accurate on the calibration rows than one decision for every row "
            f"(accuracy from {min(r.accuracy for r in constant):.3f} to "
            f"{max(r.accuracy for r in constant):.3f}, against "
            f"{max(r.majority for r in constant):.3f} for the most frequent label): the "
            "target is met, where it is, by (nearly) constant decisions. A weaker "
            "requirement keeps a useful classifier.",
            UserWarning,
            stacklevel=7,
        )
    if not unmet:
        return
    bounds = sorted(result.bound for result in unmet)
    short = sorted(result.gap for result in unmet if result.gap > result.target)
    message = (
        f"calibration: on {len(unmet)} of {len(items)} networks no strength of the edit "
        f"(up to {_MAX_STRENGTH:g}) brings the gap's upper 99% confidence bound on the "
        f"{n_rows} calibration rows within the target {unmet[0].target} (bounds from "
        f"{bounds[0]:.3f} to {bounds[-1]:.3f}); those edits take the strength of least "
        "bound, and report's calibration_bound column shows it per network."
    )
    if short:
        message += (
            f" On {len(short)} of them the gap on the rows itself is above the target at "
            f"that strength (from {short[0]:.3f} to {short[-1]:.3f}): the edit falls short "
            "there, which more rows alone need not change; a weaker requirement would."
        )
    if len(short) < len(unmet):
        message += (
            f" On {len(unmet) - len(short)} the gap is within the target but not its "
            "bound, which adds about 2.3 / sqrt(rows) to the gap (two groups of equal "
            "size at rates near one half): more rows, or a weaker requirement, leave room "
            "for it."
        )
    warnings.warn(message, UserWarning, stacklevel=7)


def copy_with_weights(network: Any, module: nn.Sequential, weights: Weights) -> Any:
    """A deep copy of a fitted skorch net whose ``module_`` holds ``weights``.

    ``copy.deepcopy`` of a skorch net pickles its modules and optimizers to bytes and back;
    copying its attribute dictionary instead, with the module's parameters mapped to those
    of an already edited module, gives the same independent copy (the optimizer's state
    refers to the new parameters) in a fraction of the time.
    """
    edited_module = load_weights(module, weights)
    memo = {id(module): edited_module}
    for old, new in zip(module.parameters(), edited_module.parameters(), strict=True):
        memo[id(old)] = new
    for old, new in zip(module.buffers(), edited_module.buffers(), strict=True):
        memo[id(old)] = new
    edited = type(network).__new__(type(network))
    edited.__dict__.update(copy.deepcopy(network.__dict__, memo))
    return edited


def edited_copy(
    network: Any, module: nn.Sequential, weights: Weights, classes, met: dict | None = None
) -> Any:
    """The edited network as a user gets it back: a copy of a skorch net with the edited
    weights, or a plain module wrapped in a fitted skorch ``NeuralNetClassifier`` whose
    labels are ``classes``. ``met`` (requirement names and targets) is added to what
    the module records its edits were made for (:data:`MET`, :func:`recorded`)."""
    if isinstance(network, nn.Module):
        from skorch import NeuralNetClassifier

        edited = NeuralNetClassifier(
            load_weights(module, weights),
            criterion=nn.CrossEntropyLoss,
            device=str(next(module.parameters()).device),
        )
        edited.initialize()
        edited.classes_inferred_ = classes
    else:
        edited = copy_with_weights(network, module, weights)
    if met:
        setattr(edited.module_, MET, recorded(module, met))
    return edited
