"""Validation of the ``device`` an estimator (or the network it wraps) asks for."""

from __future__ import annotations

import torch


def check_device(device, *, name: str = "device") -> torch.device:
    """Return ``device`` as a ``torch.device``, or raise a ValueError naming ``name``.

    torch's own errors for a malformed device or a CUDA device on a machine without one
    ("Torch not compiled with CUDA enabled") come mid-training and name no argument.

    Parameters
    ----------
    device : str or torch.device
    name : str, default="device"
        How the argument is called in the error message.

    Returns
    -------
    device : torch.device
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name}={device!r} is not a torch device: {exc}") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{name}={str(parsed)!r} asks for CUDA, but torch finds no CUDA device here; "
            f"set {name}='cpu'."
        )
    return parsed
