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
import weakref
from dataclasses import dataclass
from typing import Any

from torch import nn

from ._edit import edited_copy, prepare_network
from ._graph import as_sequential

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
    """Whether every edit for ``requirement`` comes before every edit of ``record``."""
    return record is not None and max(_stages(requirement)) < min(
        _stages(record.editor.requirement_)
    )


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
            _RECORDS[result] = Edit(network, weights, editor, target, calibration)


def _record(network) -> Edit | None:
    try:
        with _LOCK:
            return _RECORDS.get(network)
    except TypeError:  # an object that takes no weak reference was never recorded
        return None


def source_network(record: Edit) -> Any:
    """The network an editor was given, as it was then (a new object, carrying the
    source's own record where it has one)."""
    module = as_sequential(record.source)
    rebuilt = edited_copy(record.source, module, record.weights, record.editor.classes_)
    earlier = _record(record.source)
    if earlier is not None:
        with _LOCK:
            _RECORDS[rebuilt] = earlier
    return rebuilt


def replayed(requirement, networks) -> dict[int, Edit]:
    """The positions of ``networks`` whose edit for ``requirement`` (a requirement
    object or an editor's parameter) comes before the edit recorded for them."""
    found = {i: _record(network) for i, network in enumerate(networks)}
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
        record = replays[group[0]]
        sources = [source_network(replays[i]) for i in group]
        edited, _, took = editor._edit(sources, *arguments)
        again, made, more = record.editor._edit(edited, record.target, record.calibration)
        for j, i in enumerate(group):
            weights = made[j]["weights"]
            item = prepare_network(modules[i], editor.requirement_, weights[0][0].device)
            out[i], seconds[i] = again[j], took[j] + more[j]
            details[i] = {"item": item, "weights": weights}


def unedited(requirement, networks) -> list:
    """``networks``, each one replaced by its source while the edit recorded for it
    comes after ``requirement``'s (what an editor for ``requirement`` is fitted on)."""
    if isinstance(networks, nn.Module) or hasattr(networks, "module"):
        return networks  # a single network: the editor's checks say what to pass
    networks = list(networks)
    for i, network in enumerate(networks):
        record = _record(network)
        while _comes_before(requirement, record):
            network = source_network(record)
            record = _record(network)
        networks[i] = network
    return networks
