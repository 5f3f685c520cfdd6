"""What every figure of the demo's report shares: matplotlib, loaded lazily, and the
names of the methods the figures compare."""

from __future__ import annotations

from pathlib import Path

_ORIGINAL = "original"
_EDITOR = "MetanetEditor"
_PRUNED = "magnitude pruning"
_TUNED = "magnitude pruning + fine-tuning"
_ZEROED = "zero the columns"
_ZEROED_TUNED = "zero the columns + fine-tuning"
_RETRAINED = "retrain without the columns"


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "the demo's report draws its figures with matplotlib, which is not installed; "
            "install it with `pip install matplotlib` (or `pip install "
            "sklearn_metaedit[demo]`)."
        ) from exc

    # the report is written to files, also on machines with no display
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
