"""The fairness layer's training loss: the net's criterion on projected probabilities."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from torch import nn

__all__ = ["ProjectedNLLLoss", "criterion_options"]


class ProjectedNLLLoss(nn.Module):
    """Negative log-likelihood of projected probabilities, floored at ``min_proba``.

    The projection can move a row's probability close to 0 for its true class; the
    plain ``-log z`` then has a gradient of ``1 / z``, large enough to throw training off
    (seen on Adult with five groups). Below the floor the row adds a constant loss.

    The other parameters are those of ``torch.nn.CrossEntropyLoss``, with its meaning
    (on probabilities above the floor the loss equals ``cross_entropy(log(proba), ...)``),
    so that the wrapped network's class weights and label smoothing carry over.

    Parameters
    ----------
    min_proba : float, default=1e-3
    weight : Tensor of shape (n_classes,), optional
        Class weights.
    ignore_index : int, default=-100
        Rows with this label add nothing.
    reduction : {"mean", "sum"}, default="mean"
        "mean" divides by the summed weights of the rows' labels, as torch does.
    label_smoothing : float in [0, 1], default=0.0
    """

    def __init__(
        self,
        min_proba: float = 1e-3,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.min_proba = min_proba
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, proba: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(n_samples, n_classes)`` probabilities against ``(n_samples,)`` labels."""
        log_proba = torch.log(proba.clamp_min(self.min_proba))
        weight = None if self.weight is None else self.weight.to(log_proba.dtype)
        nll = nn.functional.nll_loss(
            log_proba,
            target,
            weight=weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
        if self.label_smoothing == 0:
            return nll
        # the smoothing term of torch's cross_entropy: -sum_c w_c log p_c per kept row
        kept = target != self.ignore_index
        per_class = log_proba[kept] if weight is None else log_proba[kept] * weight
        smooth = -per_class.sum()
        if self.reduction == "mean":
            smooth = smooth / (kept.sum() if weight is None else weight[target[kept]].sum())
        n_classes = log_proba.shape[1]
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing / n_classes * smooth


#: The criterion parameters the projected loss honours; any other is refused.
_CRITERION_OPTIONS = ("weight", "ignore_index", "reduction", "label_smoothing")


def criterion_options(criterion, params: dict) -> dict:
    """The wrapped net's criterion settings, checked, as :class:`ProjectedNLLLoss` arguments.

    Parameters
    ----------
    criterion : type or nn.Module
        The net's ``criterion``: ``CrossEntropyLoss`` or ``NLLLoss``, class or instance.
    params : dict
        The net's ``get_params(deep=False)``, whose ``criterion__*`` entries count.

    Returns
    -------
    dict
        Keyword arguments of :class:`ProjectedNLLLoss`.

    Raises
    ------
    ValueError
        For a setting the loss cannot honour, or an invalid one.
    """
    if isinstance(criterion, type):
        options = {}
    else:
        # an instance carries its settings as attributes
        options = {
            name: getattr(criterion, name)
            for name in _CRITERION_OPTIONS
            if hasattr(criterion, name)
        }
    options.update(
        {k[len("criterion__") :]: v for k, v in params.items() if k.startswith("criterion__")}
    )
    criterion_type = criterion if isinstance(criterion, type) else type(criterion)
    # NLLLoss has no label smoothing
    allowed = _CRITERION_OPTIONS[: 4 if issubclass(criterion_type, nn.CrossEntropyLoss) else 3]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"estimator's criterion__{unknown[0]} is not supported: the loss on projected "
            f"probabilities honours the criterion parameters {list(allowed)} of "
            f"{criterion_type.__name__}; remove criterion__{unknown[0]}."
        )
    weight = options.get("weight")
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=torch.float64).detach().cpu()
        if weight.shape != (2,) or not bool(torch.isfinite(weight).all()) or (weight < 0).any():
            raise ValueError(
                "estimator's criterion__weight must hold one finite, non-negative weight per "
                f"class (2 of them), got {weight.tolist()}."
            )
        if not (weight > 0).any():
            raise ValueError("estimator's criterion__weight is all zeros: nothing would train.")
        options["weight"] = weight.to(torch.float32)
    reduction = options.get("reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise ValueError(
            f"estimator's criterion__reduction={reduction!r} is not supported: training needs "
            "one loss per batch, so use 'mean' or 'sum'."
        )
    smoothing = options.get("label_smoothing", 0.0)
    if isinstance(smoothing, bool) or not isinstance(smoothing, Real) or not 0 <= smoothing <= 1:
        raise ValueError(
            "estimator's criterion__label_smoothing must be a number in [0, 1], got "
            f"{smoothing!r}."
        )
    ignore_index = options.get("ignore_index", -100)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, Integral):
        raise ValueError(
            f"estimator's criterion__ignore_index must be an integer, got {ignore_index!r}."
        )
    return options
