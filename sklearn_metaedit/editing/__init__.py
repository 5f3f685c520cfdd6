"""Editing trained networks with a graph metanetwork."""
