"""The reference network: a multilayer perceptron that outputs logits."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP"]

#: Element-wise activations by name; the editor accepts exactly these (and dropout).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class MLP(nn.Sequential):
    """A multilayer perceptron for tabular data, the network family the package edits.

    An ``nn.Sequential`` of ``Linear`` layers with an element-wise activation (and
    optional dropout) between them, ending in a ``Linear`` layer that outputs logits.
    Use it as the ``module`` of a skorch ``NeuralNetClassifier`` with
    ``criterion=torch.nn.CrossEntropyLoss``.

    Parameters
    ----------
    n_features : int
        Width of the input.
    hidden_sizes : sequence of int, default=(64, 64)
        Widths of the hidden layers; empty for a linear model.
    n_classes : int, default=2
        Number of output logits.
    activation : str, default="relu"
        One of ``ACTIVATIONS``: "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu", "silu".
    dropout : float, default=0.0
        Dropout probability after each activation (0 adds no dropout layer).

    Examples
    --------
    >>> import torch
    >>> from sklearn_metaedit import MLP
    >>> net = MLP(4, hidden_sizes=(8,), n_classes=2)
    >>> net(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        n_features: int,
        hidden_sizes: Sequence[int] = (64, 64),
        n_classes: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        if int(n_features) < 1:
            raise ValueError(f"n_features must be a positive integer, got {n_features!r}.")
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not supported; choose one of {sorted(ACTIVATIONS)}."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        sizes = [int(n_features), *(int(h) for h in hidden_sizes)]
        if any(h < 1 for h in sizes[1:]):
            raise ValueError(
                f"hidden_sizes must be positive integers, got {tuple(hidden_sizes)!r}."
            )
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers.append(nn.Linear(fan_in, fan_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
        layers.append(nn.Linear(sizes[-1], int(n_classes)))
        super().__init__(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Logits ``(n_samples, n_classes)`` of inputs ``(n_samples, n_features)``."""
        return super().forward(X.to(self[0].weight.dtype))
