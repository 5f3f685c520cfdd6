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
