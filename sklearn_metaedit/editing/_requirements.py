"""The requirements an editor can meet, by name.

Each name maps to a factory ``(n_features, forbidden) -> Requirement``; the parity
requirements are one per constraint of :data:`sklearn_metaedit.fairness.CONSTRAINTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from .._constraint_names import CONSTRAINTS
from ._joint import JointRequirement
from ._minimisation import DataMinimisation
from ._parity import Fairness
from ._requirement import Requirement
from ._sparsity import Sparsity

__all__ = ["REQUIREMENTS", "check_requirement_names", "make_requirement"]

#: Requirement names and the factories that build them.
REQUIREMENTS: dict[str, Callable[..., Requirement]] = {
    Sparsity.name: Sparsity,
    DataMinimisation.name: DataMinimisation,
    **{constraint: partial(Fairness, kind=constraint) for constraint in CONSTRAINTS},
}


def check_requirement_names(names: Any) -> list[str]:
    """The names of a joint requirement, checked: a list or tuple of one or more known,
    distinct names."""
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise ValueError(f"requirement must be a name or a list of names, got {names!r}.")
    names = list(names)
    unknown = [n for n in names if not isinstance(n, str) or n not in REQUIREMENTS]
    if not names or unknown:
        raise ValueError(
            f"requirement={names!r}: each requirement is one of {list(REQUIREMENTS)}"
            + (f"; {unknown!r} is not." if unknown else ", and at least one is needed.")
        )
    if len(set(names)) < len(names):
        raise ValueError(f"requirement={names!r} names a requirement twice.")
    return names


def make_requirement(
    name: str | Sequence[str], n_features: int, forbidden: Sequence[int] = ()
) -> Requirement:
    """The requirement called ``name`` for networks of ``n_features`` inputs; a list of
    names makes one :class:`~._joint.JointRequirement` that meets them all.

    Examples
    --------
    >>> make_requirement("sparsity", 4).default_target()
    0.5
    >>> make_requirement("equal_opportunity", 4, [0]).forbidden
    [0]
    >>> make_requirement(["sparsity", "data_minimisation"], 4, [0]).default_target()
    {'sparsity': 0.5, 'data_minimisation': None}
    """
    if not isinstance(name, str):
        names = check_requirement_names(name)
        parts = [
            REQUIREMENTS[n](n_features, forbidden if REQUIREMENTS[n] is not Sparsity else ())
            for n in names
        ]
        return JointRequirement(parts, n_features, forbidden)
    if name not in REQUIREMENTS:
        raise ValueError(
            f"requirement={name!r} is not supported; choose one of {list(REQUIREMENTS)}."
        )
    return REQUIREMENTS[name](n_features, forbidden)
