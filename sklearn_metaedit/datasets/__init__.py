"""Data sets: UCI Adult and German credit (bundled, offline) and a biased generator."""

from ._synthetic import make_biased_classification
from ._tabular import load_adult, load_german_credit, make_preprocessor

__all__ = ["load_adult", "load_german_credit", "make_biased_classification", "make_preprocessor"]
