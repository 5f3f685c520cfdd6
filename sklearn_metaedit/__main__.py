"""Command line: ``python -m sklearn_metaedit demo`` and ``python -m sklearn_metaedit bench``."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def demo(args: argparse.Namespace) -> int:
    """Run the package's estimators beside their peers on a bundled data set."""
    import pandas as pd
    import torch

    # tabular MLPs are small: one intra-op thread is faster than several
    torch.set_num_threads(args.threads)

    from ._compare import compare_fairness_layer, load_task

    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 20)
    start = time.perf_counter()
    _say(f"Loading {args.dataset} (sensitive feature: {args.sensitive}) ...")
    task = load_task(args.dataset, args.sensitive, random_state=args.seed)
    _say(
        f"  {len(task.X_train)} training rows, {len(task.X_test)} test rows, "
        f"{task.n_features} features after one-hot encoding"
    )
    steps = 500 if args.quick else 1200
    print(f"\n== Fairness layer vs peers: {task.name}, epsilon={args.epsilon} ==")
    table = compare_fairness_layer(
        task,
        epsilon=args.epsilon,
        steps=steps,
        random_state=args.seed,
        progress=lambda m: _say(f"  fitting {m} ..."),
    )
    print(table.drop(columns=["task", "epsilon"]).to_string(index=False, float_format="%.4f"))
    print(
        "\ndp_gap: fairlearn's demographic_parity_difference of the 0/1 test predictions "
        "(the whole test split is one prediction batch)."
    )
    for name, section in _extra_sections():
        print(f"\n== {name} ==")
        section(task, args)
    _say(f"\nDone in {time.perf_counter() - start:.0f} s.")
    return 0


def _extra_sections():
    """The online and editor sections, present once their estimators are."""
    sections = []
    try:
        from .fairness._online_demo import run_online_demo
    except ImportError:
        run_online_demo = None
    if run_online_demo is not None:

        def online(task, args):
            _say("  streaming the test split one decision at a time ...")
            table = run_online_demo(
                task.X_train,
                task.y_train,
                task.s_train,
                task.X_test,
                task.y_test,
                task.s_test,
                epsilon=args.epsilon,
                random_state=args.seed,
            )
            print(table.to_string(float_format="%.4f"))

        sections.append(("Online decisions over the test stream (batch size 1)", online))
    try:
        from .editing._demo import run_editor_demo
    except ImportError:
        run_editor_demo = None
    if run_editor_demo is not None:

        def editor(task, args):
            table = run_editor_demo(
                task.X_train,
                task.y_train,
                task.X_test,
                task.y_test,
                random_state=args.seed,
                verbose=1,
            )
            print(table.to_string(float_format="%.4f"))

        sections.append(("MetanetEditor: prune a held-out network in one forward pass", editor))
    return sections


def bench(args: argparse.Namespace) -> int:
    """Run every script in ``benchmarks/`` (``--quick`` for the CI-sized run)."""
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = sorted(folder.glob("bench_*.py"))
    if not scripts:
        _say("No benchmarks/ folder next to the package (benchmarks run from a source checkout).")
        return 1
    status = 0
    for script in scripts:
        _say(f"== {script.name}")
        command = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        status |= subprocess.call(command)
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sklearn_metaedit")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compare the estimators with their peers on bundled data")
    d.add_argument("--dataset", choices=["adult", "german"], default="adult")
    d.add_argument(
        "--sensitive", default=None, help="sex (default), race (adult), age_group (german)"
    )
    d.add_argument("--epsilon", type=float, default=0.05)
    d.add_argument("--quick", action="store_true", help="fewer epochs")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    d.set_defaults(func=demo)
    b = sub.add_parser("bench", help="run the benchmarks in benchmarks/")
    b.add_argument("--quick", action="store_true")
    b.set_defaults(func=bench)
    args = parser.parse_args(argv)
    if args.command == "demo" and args.sensitive is None:
        args.sensitive = "sex"
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
