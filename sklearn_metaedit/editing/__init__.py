"""Editing trained networks with a graph metanetwork: prune, minimise inputs, debias."""

from ._editor import MetanetEditor
from ._persistence import load_editor, save_editor
from ._population import make_population
from ._task_data import TaskData

__all__ = ["MetanetEditor", "TaskData", "load_editor", "make_population", "save_editor"]
