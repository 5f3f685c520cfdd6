"""Editing trained networks with a graph metanetwork: prune, minimise inputs, debias."""

from ._editor import MetanetEditor
from ._population import make_population
from ._task_data import TaskData

__all__ = ["MetanetEditor", "TaskData", "make_population"]
