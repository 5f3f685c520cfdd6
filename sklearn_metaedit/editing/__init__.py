"""Editing trained networks with a graph metanetwork: prune, minimise inputs, debias."""

from ._editor import MetanetEditor
from ._population import make_population

__all__ = ["MetanetEditor", "make_population"]
