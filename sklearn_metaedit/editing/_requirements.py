"""The requirements an editor can meet, by name.

Each name maps to a factory ``(n_features, forbidden) -> Requirement``; the parity
requirements are one per constraint of :data:`sklearn_metaedit.fairness.CONSTRAINTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from .._constraint_names import CONSTRAINTS
from ._minimisation import DataMinimisation
from ._parity import Fairness
from ._requirement import Requirement
from ._sparsity import Sparsity

__all__ = ["REQUIREMENTS", "make_requirement"]

#: Requirement names and the factories that build them.
REQUIREMENTS: dict[str, Callable[..., Requirement]] = {
    Sparsity.name: Sparsity,
    DataMinimisation.name: DataMinimisation,
    **{constraint: partial(Fairness, kind=constraint) for constraint in CONSTRAINTS},
}


def make_requirement(name: str, n_features: int, forbidden: Sequence[int] = ()) -> Requirement:
    """The requirement called ``name`` for networks of ``n_features`` inputs.

    Examples
    --------
    >>> make_requirement("sparsity", 4).default_target()
    0.5
    >>> make_requirement("equal_opportunity", 4, [0]).forbidden
    [0]
    """
    if name not in REQUIREMENTS:
        raise ValueError(
            f"requirement={name!r} is not supported; choose one of {list(REQUIREMENTS)}."
        )
    return REQUIREMENTS[name](n_features, forbidden)
