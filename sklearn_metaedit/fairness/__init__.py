"""Parity constraints: exact projection, fairness layer, online primal-dual predictor."""

from ._constraints import CONSTRAINTS, ConstraintCodes, check_constraint, constraint_codes
from ._decisions import parity_decisions
from ._layer import FairnessLayerClassifier, ParityProjectionModule
from ._online import OnlineFairPredictor, OnlineReport
from ._projection import project_parity
from ._reference import project_parity_cvxpy

__all__ = [
    "CONSTRAINTS",
    "ConstraintCodes",
    "FairnessLayerClassifier",
    "OnlineFairPredictor",
    "OnlineReport",
    "ParityProjectionModule",
    "check_constraint",
    "constraint_codes",
    "parity_decisions",
    "project_parity",
    "project_parity_cvxpy",
]
