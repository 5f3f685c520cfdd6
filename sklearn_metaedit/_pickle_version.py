"""Pickles that carry the package version, and a warning when another version loads one.

scikit-learn stamps the pickles of its own estimators with its version and warns with
an ``InconsistentVersionWarning`` when another version unpickles them; it does so only
for classes of its own modules. :class:`PickleVersionMixin` does the same for this
package's estimators, so that an estimator pickled by one version of
``sklearn_metaedit`` and loaded by another says so at once, instead of failing later
on an attribute that the other version does not have.
"""

from __future__ import annotations

import warnings
from typing import Any

from sklearn.exceptions import InconsistentVersionWarning as _SklearnVersionWarning

from . import __version__

__all__ = ["InconsistentVersionWarning", "PickleVersionMixin"]

#: The key under which a pickle's state holds the version that wrote it.
VERSION_KEY = "_sklearn_metaedit_version"

#: What a pickle without a stamp was written by.
UNSTAMPED = "a version that did not record its own (0.1.0.dev0 or earlier)"


class InconsistentVersionWarning(_SklearnVersionWarning):
    """An estimator is unpickled by another version of sklearn_metaedit than pickled it.

    A subclass of scikit-learn's warning of the same name, so that filters written for
    scikit-learn's (``warnings.simplefilter("error", InconsistentVersionWarning)``)
    cover this package's estimators too.

    Attributes
    ----------
    estimator_name : str
    original_version : str
        The version that wrote the pickle.
    current_version : str
        The version that loads it.
    """

    def __init__(self, *, estimator_name: str, current_version: str, original_version: str):
        super().__init__(
            estimator_name=estimator_name,
            current_sklearn_version=current_version,
            original_sklearn_version=original_version,
        )
        self.current_version = current_version
        self.original_version = original_version

    def __str__(self) -> str:
        return (
            f"Trying to unpickle estimator {self.estimator_name} from sklearn_metaedit "
            f"{self.original_version} when using version {self.current_version}. This "
            "might lead to breaking code or invalid results: refit the estimator with "
            "this version, or load it with the version that pickled it."
        )


class PickleVersionMixin:
    """Stamp the package version into pickles; warn when another version unpickles one.

    Put it first among the bases of an estimator, before scikit-learn's
    ``BaseEstimator``, whose ``__getstate__`` / ``__setstate__`` it extends.
    """

    def __getstate__(self) -> dict[str, Any]:
        # a copy: the base may hand back the instance's own __dict__
        state = dict(super().__getstate__())
        state[VERSION_KEY] = __version__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        original = state.pop(VERSION_KEY, UNSTAMPED)
        if original != __version__:
            warnings.warn(
                InconsistentVersionWarning(
                    estimator_name=type(self).__name__,
                    current_version=__version__,
                    original_version=str(original),
                ),
                stacklevel=2,
            )
        super().__setstate__(state)
