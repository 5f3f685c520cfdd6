"""Where every benchmark writes its JSON and markdown: one ``--out`` option for all."""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--out FOLDER`` to a benchmark's command line."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the JSON and markdown (default: benchmarks/results/, "
        "benchmarks/results/quick/ with --quick)",
    )


def results_folder(args: argparse.Namespace) -> Path:
    """``--out``, or ``benchmarks/results/`` (``results/quick/`` for a quick run); created."""
    folder = args.out or RESULTS / ("quick" if args.quick else "")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def one_thread() -> None:
    """Hold torch and the BLAS and OpenMP pools to one thread for the rest of the run.

    The benchmarks' networks are small: one thread computes them as fast as several on a
    free machine and far faster on a busy one (``bench_threads.py`` measures it). The
    BLAS libraries of numpy, scipy and scikit-learn are loaded first, since threadpoolctl
    limits only the libraries loaded when it is called.
    """
    import scipy.linalg  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1)
