"""OnlineFairPredictor: streaming decisions whose pooled selection-rate gap stays below epsilon.

The estimator is wiring only: groups and probabilities in, the primal-dual loop of
:mod:`sklearn_metaedit.fairness._primal_dual` over them, labels and a report out.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .._groups import (
    check_sensitive_features,
    encode_groups,
    fit_groups,
    num_samples,
    resolve_sensitive_features,
)
from .._pickle_version import PickleVersionMixin
from .._threads import with_thread_limit
from ._inputs import check_network_input, check_same_shapes, input_kind
from ._primal_dual import (
    decide_stream,
    dual_values,
    fit_band_thresholds,
    gap_bound_constants,
    pooled_gap_bound,
    score_stream,
)
from ._random import loader_generators, seeded_global_rng

__all__ = ["OnlineFairPredictor", "OnlineReport"]


@dataclass(frozen=True)
class OnlineReport:
    """The state of a stream: what was decided, per group, and what the theory allows.

    Attributes
    ----------
    by_group : DataFrame
        One row per group seen in fit (index: the group labels), columns
        ``n_decisions``, ``n_selected``, ``selection_rate`` (pooled over the stream, NaN
        for a group with no decision yet), ``dual_upper``, ``dual_lower`` (the duals now)
        and ``threshold`` (the warm-started ``theta_g``).
    n_decisions : int
        Decisions since ``fit`` or ``reset``.
    pooled_gap : float
        Largest minus smallest pooled selection rate over the groups with decisions.
    band : tuple of float
        ``(lo, hi)``: the band the duals hold the group rates in.
    epsilon : float
        The estimator's ``epsilon``.
    bound : float
        The guaranteed ceiling on ``pooled_gap`` for this many decisions per group:
        ``hi - lo`` plus a term in ``1 / N_g`` (see
        :func:`~sklearn_metaedit.fairness._primal_dual.pooled_gap_bound`). It holds for
        every order of arrival; nothing about the stream is assumed.
    """

    by_group: pd.DataFrame
    n_decisions: int
    pooled_gap: float
    band: tuple[float, float]
    epsilon: float
    bound: float

    def __str__(self) -> str:
        lo, hi = self.band
        head = (
            f"{self.n_decisions} decisions; pooled gap {self.pooled_gap:.4f} "
            f"(guaranteed <= {self.bound:.4f}; epsilon {self.epsilon}; band [{lo:.4f}, {hi:.4f}])"
        )
        return head + "\n" + self.by_group.to_string()


def _accepts(method: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


class OnlineFairPredictor(PickleVersionMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Decide a stream one row (or one batch) at a time, keeping the pooled parity gap <= epsilon.

    Each group ``g`` has a threshold ``theta_g``, warm-started in ``fit`` as the
    accuracy-optimal deterministic group thresholds whose training selection rates fit
    in a band ``[lo, hi]`` of width ``(1 - margin) * epsilon`` (the training rates may
    spread over one row of the smallest training group, ``1 / min_g n_g``, when the band
    is narrower: otherwise only the thresholds that select every row or none would fit,
    and the predictor would be constant), and two duals computed
    from its pooled counts (``N_g`` decisions, ``S_g`` of them positive):
    ``dual_upper_g = step_size * max(0, S_g - N_g hi)`` and
    ``dual_lower_g = step_size * max(0, N_g lo - S_g)``. A row of group ``g`` with
    probability ``p`` is selected when ``p + dual_lower_g - dual_upper_g >= theta_g``.
    Rows are decided in order, so a batch gives exactly the decisions its rows would get
    one at a time.

    The guarantee, for every sequence of rows (no stochastic assumption, any batch size,
    any drift): after ``N_g >= 1`` decisions in group ``g`` and ``N_h >= 1`` in group
    ``h``, the gap between their pooled selection rates is at most
    ``(1 - margin) * epsilon + (1 / step_size + 1) * (1 / N_g + 1 / N_h)``;
    :meth:`report` gives the exact bound for the stream so far.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        The base model (a skorch net, ``FairnessLayerClassifier``, ``LogisticRegression``,
        a ``Pipeline``...). Binary targets only. When its ``fit`` / ``predict_proba``
        take ``sensitive_features``, they receive the groups.
    constraint : {"demographic_parity"}, default="demographic_parity"
        The parity to hold: equal selection rates across groups.
    epsilon : float in [0, 1), default=0.02
        The largest allowed gap between two groups' pooled selection rates.
        ``epsilon=0`` asks for exact parity: the band is a single rate, and the pooled
        gap is at most ``report().bound``, which falls as ``O(1 / N)`` with the decisions
        per group. It reaches zero only in the limit: deterministic decisions over a
        finite stream can meet exact parity only where the counts allow it (randomised
        decisions could, but this predictor's decisions are deterministic by design).
    step_size : float, default=0.5
        ``eta``: how far one decision outside the band moves its group's threshold.
        Larger shrinks the finite-sample term of the guarantee; smaller perturbs the
        decisions of a group outside the band less.
    margin : float in [0, 1), default=0.1
        Fraction of ``epsilon`` held back: the band is ``(1 - margin) * epsilon`` wide,
        so the finite-sample term has room before the gap reaches ``epsilon``.
    prefit : bool, default=False
        If True, ``estimator`` is already fitted and ``fit`` only sets the thresholds
        and duals from ``(X, y)``.
    sensitive_feature : hashable or list of hashables, optional
        Column(s) of ``X`` (pandas names or integer positions) holding the groups, for
        use without routed ``sensitive_features``; several columns make
        intersectional groups.
    random_state : int, RandomState instance or None, default=None
        Set as the ``random_state`` of the fitted clone of ``estimator`` when it has
        that parameter. Otherwise (a skorch net, whose initialisation, dropout and
        shuffling draw from torch's global generator) it seeds that generator for the
        fit and holds it, so that the fit equals a serial fit also when other threads
        fit at the same time; such fits run one at a time. The decisions themselves
        involve no randomness.

    Attributes
    ----------
    estimator_ : classifier
        The fitted base model (``estimator`` itself when ``prefit``).
    classes_ : ndarray of shape (2,)
        Class labels; a decision of 1 is ``classes_[1]``.
    groups_ : ndarray of object, shape (n_groups,)
        The groups seen in fit.
    thresholds_ : ndarray of shape (n_groups,)
        ``theta_g``.
    band_ : tuple of float
        ``(lo, hi)``, the band of selection rates the duals enforce.
    train_rates_ : ndarray of shape (n_groups,)
        The selection rates of the thresholds on the training data.
    dual_upper_, dual_lower_ : ndarray of shape (n_groups,)
        The duals now (after the decisions of :meth:`partial_predict` so far).
    n_decisions_, n_selected_ : ndarray of int64, shape (n_groups,)
        Decisions and positive decisions per group since ``fit`` or :meth:`reset`.

    See Also
    --------
    fairlearn.postprocessing.ThresholdOptimizer : offline group thresholds, randomised.

    Notes
    -----
    Threads: :meth:`predict`, :meth:`predict_proba` and :meth:`score` replay ``X`` from
    the fitted state and change nothing, so one fitted predictor serves them to many
    threads at once, provided the base model's ``predict_proba`` is safe to share
    (``FairnessLayerClassifier``'s and scikit-learn's are; a skorch net's sets its module
    to eval mode on every call, harmless between predictions but not next to training
    that net). :meth:`partial_predict` and :meth:`reset` advance or restart the one
    stream the predictor holds: give each thread its own stream (``copy.deepcopy`` of the
    fitted predictor), or serialise the calls with a lock.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_metaedit.datasets import make_biased_classification
    >>> from sklearn_metaedit import OnlineFairPredictor
    >>> X, y, groups = make_biased_classification(2000, random_state=0)
    >>> online = OnlineFairPredictor(LogisticRegression(), epsilon=0.05)
    >>> online = online.fit(X[:1000], y[:1000], sensitive_features=groups[:1000])
    >>> for i in range(1000, 2000):
    ...     decision = online.partial_predict(X[i : i + 1], sensitive_features=groups[i : i + 1])
    >>> report = online.report()
    >>> report.n_decisions, report.pooled_gap <= report.bound
    (1000, True)
    """

    __metadata_request__fit: ClassVar[dict] = {"sensitive_features": True}
    __metadata_request__predict: ClassVar[dict] = {"sensitive_features": True}
    __metadata_request__predict_proba: ClassVar[dict] = {"sensitive_features": True}
    __metadata_request__score: ClassVar[dict] = {"sensitive_features": True}

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "constraint": [StrOptions({"demographic_parity"})],
        "epsilon": [Interval(Real, 0, 1, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "margin": [Interval(Real, 0, 1, closed="left")],
        "prefit": ["boolean"],
        "sensitive_feature": [Hashable, list, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator: Any,
        *,
        constraint: str = "demographic_parity",
        epsilon: float = 0.02,
        step_size: float = 0.5,
        margin: float = 0.1,
        prefit: bool = False,
        sensitive_feature: Hashable | Sequence[Hashable] | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.estimator = estimator
        self.constraint = constraint
        self.epsilon = epsilon
        self.step_size = step_size
        self.margin = margin
        self.prefit = prefit
        self.sensitive_feature = sensitive_feature
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=False)
    @with_thread_limit
    def fit(self, X: Any, y: Any, *, sensitive_features: Any = None) -> OnlineFairPredictor:
        """Fit the base model (unless ``prefit``), warm-start the thresholds, zero the duals.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features), or what the base model takes
            A table, or, for a base model that takes them (a skorch net,
            ``FairnessLayerClassifier``), an N-D array or tensor (images), a dict of
            arrays (``sensitive_feature`` may name a key) or a Dataset. Those are checked
            (numeric, finite, one row per sample) and given to the base model as they
            are; later calls must give samples of the same shape.
        y : array-like of shape (n_samples,)
            Binary labels.
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns), optional
            Group labels; required unless ``sensitive_feature`` names columns of ``X``.

        Returns
        -------
        self : OnlineFairPredictor
        """
        name = type(self).__name__
        if y is None:
            raise ValueError(f"{name} requires y to be passed, but the target y is None.")
        X = _rows(X)
        if sparse.issparse(X) and self.sensitive_feature is not None:
            raise TypeError(
                "Sparse input is not supported when `sensitive_feature` reads the groups "
                "from X; pass a dense X, or the groups as `sensitive_features`."
            )
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 2 and shape[1] == 0:
            raise ValueError(
                f"0 feature(s) (shape={tuple(shape)}) while a minimum of 1 is required."
            )
        self._input_kind = input_kind(X)
        if self._input_kind == "table":
            validate_data(self, X, skip_check_array=True)
            self._sample_shapes = None
        else:
            # images, tensors, dicts of arrays, Datasets: checked, and given to the model
            # as they are
            self._sample_shapes = self._check_input(X).sample_shapes
            for name in ("n_features_in_", "feature_names_in_"):
                if hasattr(self, name):
                    delattr(self, name)
        labels = self._groups_of(X, sensitive_features)
        y = column_or_1d(y, warn=True)
        if len(y) != len(labels):
            raise ValueError(f"y has {len(y)} labels but X has {len(labels)} rows.")
        if len(y) < 2:
            raise ValueError(f"n_samples={len(y)}: fit needs rows of at least two groups.")
        check_classification_targets(y)
        if type_of_target(y) != "binary":
            raise ValueError(
                f"Only binary classification is supported: {name} needs binary targets, "
                f"got {type_of_target(y)!r} (classes {np.unique(y).tolist()})."
            )
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"y holds a single class {np.unique(y).tolist()}; {name}.fit needs both classes "
                "to warm-start the group thresholds (on one class the most accurate threshold "
                "selects every row or none)."
            )
        groups = fit_groups(labels)
        if len(groups) < 2:
            raise ValueError(
                f"sensitive_features holds a single group {groups.tolist()}; parity needs "
                "at least two groups."
            )
        codes = encode_groups(labels, groups)

        if self.prefit:
            check_is_fitted(self.estimator)
            estimator = self.estimator
        else:
            estimator = clone(self.estimator)
            fit_kwargs = (
                {"sensitive_features": labels}
                if _accepts(estimator.fit, "sensitive_features")
                else {}
            )
            if self.random_state is None:
                estimator.fit(X, y, **fit_kwargs)
            elif "random_state" in estimator.get_params():
                estimator.set_params(random_state=self.random_state)
                estimator.fit(X, y, **fit_kwargs)
            else:
                # A model without random_state (a skorch net) draws from torch's global
                # generator: seed it, and hold it for the fit so that fits in other
                # threads cannot draw in between. A skorch net's data loaders get
                # generators of their own, so that its predictions never draw from it.
                seed = int(check_random_state(self.random_state).randint(2**31))
                if hasattr(estimator, "get_params"):
                    estimator.set_params(
                        **loader_generators(estimator.get_params(deep=False), seed)
                    )
                device = estimator.get_params().get("device")
                with seeded_global_rng(seed, device=device if isinstance(device, str) else None):
                    estimator.fit(X, y, **fit_kwargs)
        self.estimator_ = estimator
        self.classes_ = np.unique(y)
        model_classes = list(getattr(estimator, "classes_", self.classes_))
        if len(model_classes) != 2 or not np.isin(self.classes_, model_classes).all():
            raise ValueError(
                f"The estimator's classes {model_classes} do not match the labels "
                f"{self.classes_.tolist()} of y."
            )
        self._positive_column = model_classes.index(self.classes_[1])
        # Looked up once: inspecting a signature costs more than a decision.
        self._proba_takes_groups = _accepts(estimator.predict_proba, "sensitive_features")
        self.groups_ = groups
        self._code_of = {g: i for i, g in enumerate(groups.tolist())}

        scores = np.asarray(self._positive_proba(X, labels), dtype=np.float64)
        width = (1.0 - self.margin) * self.epsilon
        # A band narrower than one row of the smallest group leaves the warm start only
        # the thresholds that select every row or none (exactly equal rates); those get
        # one row of slack, and the duals hold the stream to the band.
        one_row = 1.0 / np.bincount(codes).min()
        warm = fit_band_thresholds(
            scores,
            (y == self.classes_[1]).astype(np.int64),
            codes,
            len(groups),
            max(width, one_row),
        )
        self.thresholds_ = warm.thresholds
        self.train_rates_ = warm.rates
        # The band is centred on the training rates (which span at most its width, or one
        # row of the smallest group).
        centre = (warm.rates.min() + warm.rates.max()) / 2.0
        lo = min(max(centre - width / 2.0, 0.0), 1.0 - width)
        self.band_ = (float(lo), float(lo + width))
        self._thresholds = self.thresholds_.tolist()
        self._bound_constants = gap_bound_constants(self.thresholds_, self.band_, self.step_size)
        self.reset()
        return self

    def reset(self) -> OnlineFairPredictor:
        """Start a new stream: the counts, and so the duals, return to zero.

        Returns
        -------
        self : OnlineFairPredictor
        """
        self._check_fitted()
        n_groups = len(self.groups_)
        self._n = [0] * n_groups
        self._selected = [0] * n_groups
        return self

    # --------------------------------------------------------------- decisions

    @with_thread_limit
    def partial_predict(self, X: Any, *, sensitive_features: Any = None) -> np.ndarray:
        """Decide the rows of ``X`` in order and carry the stream's state forward.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            One row or a batch.
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns), optional
            Group labels; required unless ``sensitive_feature`` names columns of ``X``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Class labels.
        """
        self._check_fitted()
        return self._decide(X, sensitive_features, self._n, self._selected)

    def _decide(self, X, sensitive_features, n_decided, n_selected) -> np.ndarray:
        """Decide the rows of ``X`` in order from the counts given (updated in place)."""
        X = _rows(X)
        labels, codes = self._codes(X, sensitive_features)
        scores = self._positive_proba(X, labels)
        decisions = decide_stream(
            scores, codes, self._thresholds, n_decided, n_selected, self.band_, self.step_size
        )
        return self.classes_[np.frombuffer(decisions, dtype=np.uint8)]

    @with_thread_limit
    def predict(self, X: Any, *, sensitive_features: Any = None) -> np.ndarray:
        """Decide ``X`` as a fresh stream in row order, from the state after ``fit``.

        The stream's state (:meth:`partial_predict`) is left unchanged, so ``predict``
        on the same rows always gives the same answer.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns), optional
            Group labels; required unless ``sensitive_feature`` names columns of ``X``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Class labels.
        """
        self._check_fitted()
        zeros = [0] * len(self.groups_)
        return self._decide(X, sensitive_features, zeros, list(zeros))

    @with_thread_limit
    def predict_proba(self, X: Any, *, sensitive_features: Any = None) -> np.ndarray:
        """Adjusted probabilities of ``X`` replayed as a fresh stream, as :meth:`predict`.

        The positive column is the base probability moved by the row's group threshold
        and duals at its decision time, ``clip(0.5 + p + dual_lower - dual_upper -
        theta, 0, 1)``: at least 0.5 exactly when :meth:`predict` selects the row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns), optional

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            Columns in the order of ``classes_``.
        """
        self._check_fitted()
        X = _rows(X)
        labels, codes = self._codes(X, sensitive_features)
        scores = self._positive_proba(X, labels)
        adjusted = score_stream(
            scores,
            codes,
            self._thresholds,
            [0] * len(self.groups_),
            [0] * len(self.groups_),
            self.band_,
            self.step_size,
        )
        positive = np.asarray(adjusted, dtype=np.float64)
        return np.column_stack([1.0 - positive, positive])

    def score(
        self, X: Any, y: Any, sample_weight: Any = None, *, sensitive_features: Any = None
    ) -> float:
        """Accuracy of :meth:`predict` on ``X`` replayed as a stream.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the accuracy (scikit-learn's ``score``); the
            decisions do not depend on them. Under metadata routing it is passed only
            when requested (``set_score_request(sample_weight=True)``).
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns), optional

        Returns
        -------
        score : float
            The (weighted) fraction of correct decisions.
        """
        y_pred = self.predict(X, sensitive_features=sensitive_features)
        return float(accuracy_score(y, y_pred, sample_weight=sample_weight))

    # ------------------------------------------------------------------ report

    @property
    def dual_upper_(self) -> np.ndarray:
        return dual_values(self.n_decisions_, self.n_selected_, self.band_, self.step_size)[0]

    @property
    def dual_lower_(self) -> np.ndarray:
        return dual_values(self.n_decisions_, self.n_selected_, self.band_, self.step_size)[1]

    @property
    def n_decisions_(self) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self._n, dtype=np.int64)

    @property
    def n_selected_(self) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self._selected, dtype=np.int64)

    def report(self) -> OnlineReport:
        """Report the stream so far: decisions and pooled rates per group, duals, the bound.

        Returns
        -------
        OnlineReport
        """
        n, selected = self.n_decisions_, self.n_selected_
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(n > 0, selected / np.maximum(n, 1), np.nan)
        seen = rates[n > 0]
        gap = float(seen.max() - seen.min()) if len(seen) >= 2 else 0.0
        by_group = pd.DataFrame(
            {
                "n_decisions": n,
                "n_selected": selected,
                "selection_rate": rates,
                "dual_upper": self.dual_upper_,
                "dual_lower": self.dual_lower_,
                "threshold": self.thresholds_,
            },
            index=pd.Index(self.groups_, name="group", tupleize_cols=False),
        )
        bound = pooled_gap_bound(n, self.band_, *self._bound_constants)
        return OnlineReport(by_group, int(n.sum()), gap, self.band_, self.epsilon, bound)

    # ----------------------------------------------------------------- helpers

    def _check_fitted(self) -> None:
        # A plain attribute test: check_is_fitted would cost more than a decision.
        if not hasattr(self, "_code_of"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call 'fit' first."
            )

    def _check_input(self, X: Any):
        """Check an X that is not a table (images, tensors, dicts, Datasets) without
        converting it: numeric, finite, one row per sample in every entry."""
        return check_network_input(X, convert=False)

    def _groups_of(self, X: Any, sensitive_features: Any) -> np.ndarray:
        if (
            sensitive_features is None
            and self.sensitive_feature is not None
            and input_kind(X) == "dataset"
        ):
            raise ValueError(
                f"sensitive_feature {self.sensitive_feature!r} cannot be read from X: X is a "
                "Dataset, which has no columns to name; pass the groups as "
                "sensitive_features (one per item)."
            )
        return resolve_sensitive_features(X, sensitive_features, self.sensitive_feature)

    def _codes(self, X: Any, sensitive_features: Any) -> tuple[np.ndarray, list[int]]:
        kind = input_kind(X)
        fitted_kind = getattr(self, "_input_kind", "table")
        if kind != "table" or fitted_kind != "table":
            if kind == "table":
                X = np.asarray(X)
            given = self._check_input(X)
            check_same_shapes(self._sample_shapes, given, fitted_kind)
        # Shape checks by hand: validate_data would cost more than a decision.
        shape = getattr(X, "shape", None) if kind == "table" else None
        if shape is not None and len(shape) == 1:
            raise ValueError(
                "Expected 2D array, got 1D array instead. Reshape your data either using "
                "array.reshape(-1, 1) if it has a single feature or array.reshape(1, -1) if "
                "it holds a single sample."
            )
        if (
            fitted_kind == "table"
            and shape is not None
            and len(shape) == 2
            and shape[1] != self.n_features_in_
        ):
            raise ValueError(
                f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        n_rows = num_samples(X)
        code_of = self._code_of
        if _plain_labels(sensitive_features, n_rows):
            # Integers and strings cannot be missing: skip the per-value validation,
            # which costs more than the decision itself on a one-row call.
            labels = sensitive_features
            values = labels.tolist() if isinstance(labels, np.ndarray) else labels
        else:
            if sensitive_features is not None:
                labels = check_sensitive_features(sensitive_features, n_rows)
            else:
                labels = self._groups_of(X, None)
            values = labels.tolist()
        try:
            codes = [code_of[label] for label in values]
        except (KeyError, TypeError):
            if labels is sensitive_features:
                labels = check_sensitive_features(sensitive_features, n_rows)
            encode_groups(labels, self.groups_)  # raises the ValueError naming the groups
            raise
        return labels, codes

    def _positive_proba(self, X: Any, labels: Any) -> list[float]:
        if self._proba_takes_groups:
            proba = self.estimator_.predict_proba(X, sensitive_features=labels)
        else:
            proba = self.estimator_.predict_proba(X)
        column = np.asarray(proba)[:, self._positive_column]
        scores = column.tolist()
        # NaN fails both comparisons; a Python check is cheaper than numpy on few rows.
        if len(scores) <= 64:
            valid = all(0.0 <= p <= 1.0 for p in scores)
        else:
            valid = bool(((column >= 0.0) & (column <= 1.0)).all())
        if not valid:
            raise ValueError(
                "The estimator's predict_proba returned values outside [0, 1] or NaN; "
                "the online decisions need probabilities."
            )
        return scores

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


def _plain_labels(values: Any, n_rows: int) -> bool:
    """Whether ``values`` is a 1-D run of integers or strings, one per row (never missing)."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or len(values) != n_rows:
            return False
        if values.dtype.kind in "iuU":
            return True
        values = values.tolist() if values.dtype.kind == "O" else None
    if isinstance(values, list) and len(values) == n_rows:
        return all(type(v) is str or type(v) is int for v in values)
    return False


def _rows(X: Any) -> Any:
    """X itself, or as an array when it has neither a shape nor a length."""
    if hasattr(X, "shape") or hasattr(X, "__len__"):
        return X
    return np.asarray(X)
