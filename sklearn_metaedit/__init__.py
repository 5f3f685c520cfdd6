"""Bring trained neural networks into compliance, the scikit-learn way."""

__version__ = "0.1.0.dev0"
