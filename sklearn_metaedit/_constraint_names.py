"""The names of the parity constraints, in one place.

Every module that accepts a constraint by name (the fairness estimators, the metrics
and the editor's fairness requirements) reads them from here, so that a constraint is
added once.
"""

__all__ = ["CONSTRAINTS", "NEEDS_LABELS"]

#: Parity constraints, as fairlearn names them.
CONSTRAINTS = ("demographic_parity", "equal_opportunity", "equalized_odds")

#: The constraints that compare rates among rows of one true label.
NEEDS_LABELS = frozenset({"equal_opportunity", "equalized_odds"})
