"""What each editor edited, kept in memory, so that editors chained in any order make
their edits in one order: data minimisation, then sparsity, then the parity constraints.

Two orders lose what the other keeps. A network pruned first has few weights left to
take up what a dropped feature contributed: on a synthetic task whose dropped feature is
a linear combination of others, pruning then minimising reached 0.914 against 0.945 for
the other order (the editing guide). And pruning or minimising a network edited for
parity moves its gap: on Adult, editing parity then pruning left 8 of 12 gaps above the
target, where pruning first left none. So an editor given a network that an editor of a
later requirement in that order returned (in this process) edits the network that editor
was given, and has that editor edit the result again, for the same target and
calibration argument: a Pipeline's orders give the same edits, each requirement's
guarantee holding at the end. Fitted on such networks, an editor is fitted on the
networks before those edits.

The record is held in memory only, as long as the edited network object lives, and never
pickled: a network saved and loaded, or copied, is edited as it is (and the checks of
:meth:`~._requirement.Requirement.check_population` warn of what that costs). It holds
the edited network's source object, a copy of its weights at the time, the editor and its
calibration argument as given.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

from torch import nn

from ._edit import edited_copy, prepare_network
from ._graph import as_sequential, extract_weights
from ._population import array_digest

__all__ = ["Edit", "record_edits", "replay", "replayed", "source_network", "unedited"]

#: Where each requirement's edit comes in the order edits are made in; parity
#: constraints (every other name) come last.
STAGES = {"data_minimisation": 0, "sparsity": 1}
_LAST = 2


@dataclass(frozen=True)
class Edit:
    """How an edited network came to be: the editor and its arguments, and the network
    it was given (``source``, with ``weights`` its weights at the time)."""

    source: Any
    weights: list
    editor: Any
    target: Any
    calibration: Any
    #: the fitted state the editor had (a refit replaces them)
    fitted: tuple = ()
    #: a digest of the edited network's weights (a network changed since its edit is
    #: edited as it is)
    digest: str = ""


_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _stages(requirement) -> list[int]:
    """The stages of a requirement object's parts, or of an editor's ``requirement``."""
    if isinstance(requirement, str):
        names = [requirement]
    elif hasattr(requirement, "name"):
        names = list(getattr(requirement, "names", [requirement.name]))
    else:
        names = list(requirement)
    return [STAGES.get(name, _LAST) for name in names]


def _comes_before(requirement, record: Edit | None) -> bool:
    """Whether an edit for ``requirement`` comes before the edit of ``record``: its last
    stage is earlier than the recorded edit's last (a total order, so that a chain of
    edits made again ends; a joint editor for minimisation and parity comes after one
    for sparsity, since its parity edit must come last)."""
    return record is not None and max(_stages(requirement)) < max(
        _stages(record.editor.requirement_)
    )


def _digest(network) -> str:
    """A digest of a network's weights and biases, in their order and shapes."""
    pairs = extract_weights(as_sequential(network))
    return array_digest(*(t.detach().cpu().numpy() for pair in pairs for t in pair))


def _fitted(editor) -> tuple:
    return (getattr(editor, "metanet_", None), getattr(editor, "requirement_", None))


def record_edits(editor, networks, edited, details, target, calibration) -> None:
    """Record, for each of an editor's ``edited`` networks, the network it was made from
    (a network :func:`replay` made keeps the record of the edit that came last)."""
    with _LOCK:
        for network, result, detail in zip(networks, edited, details, strict=True):
            if result in _RECORDS:
                continue
            weights = [
                (w.detach().clone(), b.detach().clone()) for w, b in detail["item"]["weights"]
            ]
            _RECORDS[result] = Edit(
                network, weights, editor, target, calibration, _fitted(editor), _digest(result)
            )


def _lookup(network) -> Edit | None:
    try:
        with _LOCK:
            return _RECORDS.get(network)
    except TypeError:  # an object that takes no weak reference was never recorded
        return None


def _stale(record: Edit, network) -> bool:
    """Whether a record no longer describes ``network``: the network's weights changed
    since its edit, the editor was fitted again, or its source no longer has the
    recorded weights' shapes."""
    try:
        shapes = [w.shape for w, _ in extract_weights(as_sequential(record.source))]
        return (
            _digest(network) != record.digest
            or any(a is not b for a, b in zip(_fitted(record.editor), record.fitted, strict=True))
            or shapes != [w.shape for w, _ in record.weights]
        )
    except (TypeError, ValueError):  # a source that is no longer a network
        return True


def _record(network, stale: list | None = None) -> Edit | None:
    """The record of ``network`` where it still describes it; a stale one is dropped
    (and counted in ``stale``)."""
    record = _lookup(network)
    if record is not None and _stale(record, network):
        with _LOCK:
            _RECORDS.pop(network, None)
        if stale is not None:
            stale.append(network)
        return None
    return record


def _warn_stale(stale: list) -> None:
    if stale:
        warnings.warn(
            f"{len(stale)} of the networks were changed since an editor edited them (their "
            "weights, or their source network), or that editor was fitted again: they are "
            "edited as they are, not as the order of edits (data minimisation, sparsity, "
            "parity) would have them edited again.",
            UserWarning,
            stacklevel=5,
        )


def source_network(record: Edit) -> Any:
    """The network an editor was given, as it was then (a new object, carrying the
    source's own record where it has one)."""
    module = as_sequential(record.source)
    rebuilt = edited_copy(record.source, module, record.weights, record.editor.classes_)
    # the source's record, checked against the rebuilt network when it is read
    earlier = _lookup(record.source)
    if earlier is not None:
        with _LOCK:
            _RECORDS[rebuilt] = earlier
    return rebuilt


def replayed(requirement, networks) -> dict[int, Edit]:
    """The positions of ``networks`` whose edit for ``requirement`` (a requirement
    object or an editor's parameter) comes before the edit recorded for them."""
    stale: list = []
    found = {i: _record(network, stale) for i, network in enumerate(networks)}
    _warn_stale(stale)
    return {i: record for i, record in found.items() if _comes_before(requirement, record)}


def replay(editor, replays: dict[int, Edit], modules, arguments, results) -> None:
    """Edit :func:`replayed`'s networks: each recorded edit's source edited by
    ``editor`` (for ``arguments``, its target and calibration argument), then edited
    again by the recorded editor (one call per editor, target and calibration argument).
    ``results`` (the edited networks, details and seconds of every position) takes them
    in place; a detail pairs the network as given with the final weights, for the
    report."""
    groups: dict[tuple, list[int]] = {}
    for i, record in replays.items():
        key = (id(record.editor), repr(record.target), id(record.calibration))
        groups.setdefault(key, []).append(i)
    out, details, seconds = results
    for group in groups.values():
        started, record = time.perf_counter(), replays[group[0]]
        sources = [source_network(replays[i]) for i in group]
        edited = editor._edit(sources, *arguments)[0]
        again, made, _ = record.editor._edit(edited, record.target, record.calibration)
        for j, i in enumerate(group):
            weights = made[j]["weights"]
            item = prepare_network(modules[i], editor.requirement_, weights[0][0].device)
            out[i], details[i] = again[j], {"item": item, "weights": weights}
            seconds[i] = (time.perf_counter() - started) / len(group)


def unedited(requirement, networks) -> list:
    """``networks``, each one replaced by its source while the edit recorded for it
    comes after ``requirement``'s (what an editor for ``requirement`` is fitted on)."""
    if isinstance(networks, nn.Module) or hasattr(networks, "module"):
        return networks  # a single network: the editor's checks say what to pass
    networks, stale = list(networks), []
    for i, network in enumerate(networks):
        record = _record(network, stale)
        while _comes_before(requirement, record):
            network = source_network(record)
            record = _record(network, stale)
        networks[i] = network
    _warn_stale(stale)
    return networks
