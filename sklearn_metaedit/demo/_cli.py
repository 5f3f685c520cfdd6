"""The command line ``python -m sklearn_metaedit demo``: its options and its run."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# per size: optimiser steps of the batch methods, and the editor sweep's settings
SIZES = {
    "quick": {"steps": 500, "n_networks": 10, "n_held_out": 3, "max_steps": 200},
    "full": {"steps": 1200, "n_networks": 20, "n_held_out": 5, "max_steps": 600},
}
SPARSITIES = (0.5, 0.8, 0.9, 0.95)
# Protected attributes per data set (those of the US Equal Credit Opportunity Act,
# 15 U.S.C. 1691, among them age and marital status, where the data set has them); the
# data-minimisation edit forbids their input columns. The demo's inputs already leave out
# the fairness part's groups (load_task drops Adult's sex and race, German credit's
# personal_status_sex and age), so the columns forbidden are those of the protected
# attributes still among the inputs: Adult's age and marital-status, German credit's
# foreign_worker.
PROTECTED = {
    "adult": ("sex", "race", "age", "marital-status"),
    "german": ("personal_status_sex", "age", "foreign_worker"),
}


def _protected_columns(
    feature_names: list[str], attributes: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """The input columns of ``attributes``, and the attributes none of whose columns is an input.

    A column belongs to an attribute when it is the attribute itself (a numeric column) or
    one of its one-hot columns (``<attribute>_<category>``).
    """
    columns = [
        name
        for name in feature_names
        if any(name == a or name.startswith(f"{a}_") for a in attributes)
    ]
    absent = [a for a in attributes if not any(c == a or c.startswith(f"{a}_") for c in columns)]
    return columns, absent


def demo(args: argparse.Namespace) -> int:
    """Run the package's estimators beside their peers on a bundled data set; write a report."""
    from ._report import _pyplot

    # the report's figures need matplotlib: say so before minutes of work, not after
    _pyplot()

    import pandas as pd
    import torch

    # tabular MLPs are small: one intra-op thread is faster than several
    torch.set_num_threads(args.threads)

    from ._editing import run_editor_sweep, run_minimisation_comparison
    from ._fairness import compare_fairness_layer
    from ._online import online_gap_trajectory, run_online_demo
    from ._report import editor_summary, minimisation_summary, write_report
    from ._tasks import load_task

    size = SIZES[args.size]
    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 20)
    start = time.perf_counter()
    _say(f"Loading {args.dataset} (sensitive feature: {args.sensitive}) ...")
    task = load_task(args.dataset, args.sensitive, random_state=args.seed)
    _say(
        f"  {len(task.X_train)} training rows, {len(task.X_test)} test rows, "
        f"{task.n_features} features after one-hot encoding"
    )
    print(f"\n== Fairness layer vs peers: {task.name}, epsilon={args.epsilon} ==")
    fairness = compare_fairness_layer(
        task,
        epsilon=args.epsilon,
        steps=size["steps"],
        random_state=args.seed,
        progress=lambda m: _say(f"  fitting {m} ..."),
    )
    print(fairness.drop(columns=["task", "epsilon"]).to_string(index=False, float_format="%.4f"))
    print(
        "\ndp_gap: fairlearn's demographic_parity_difference of the 0/1 test predictions "
        "(the whole test split is one prediction batch)."
    )

    print("\n== Online decisions over the test stream (batch size 1) ==")
    _say("  streaming the test split one decision at a time ...")
    stream = (task.X_train, task.y_train, task.s_train, task.X_test, task.y_test, task.s_test)
    online = run_online_demo(*stream, epsilon=args.epsilon, random_state=args.seed)
    print(online.to_string(float_format="%.4f"))
    _say("  recording the pooled gap and its bound along the stream ...")
    trajectory = online_gap_trajectory(*stream, epsilon=args.epsilon, random_state=args.seed)

    print("\n== MetanetEditor: prune held-out networks in one forward pass each ==")
    sweep = run_editor_sweep(
        task.X_train,
        task.y_train,
        task.X_test,
        task.y_test,
        sparsities=SPARSITIES,
        n_networks=size["n_networks"],
        n_held_out=size["n_held_out"],
        max_steps=size["max_steps"],
        random_state=args.seed,
        verbose=1,
    )
    summary = editor_summary(sweep).set_index(["method", "target"])
    print(summary[["accuracy", "sparsity", "seconds"]].to_string(float_format="%.4f"))

    print("\n== MetanetEditor: stop reading protected input columns (data minimisation) ==")
    attributes = PROTECTED[args.dataset]
    forbidden, absent = _protected_columns(task.feature_names, attributes)
    note = f"Protected attributes: {', '.join(attributes)}."
    if absent:
        note += (
            f" {' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not among the "
            "networks' inputs (the demo passes sensitive features as groups, never as inputs)."
        )
    note += f" Forbidden input columns: {', '.join(forbidden)}."
    print(note)
    minimisation = run_minimisation_comparison(
        task.X_train,
        task.y_train,
        task.X_test,
        task.y_test,
        forbidden_features=forbidden,
        feature_names=task.feature_names,
        n_networks=size["n_networks"],
        n_held_out=size["n_held_out"],
        max_steps=size["max_steps"],
        random_state=args.seed,
        verbose=1,
    )
    print(minimisation_summary(minimisation).set_index("method").to_string(float_format="%.4f"))
    print(
        "forbidden_columns_used: the most forbidden columns any of the method's networks "
        "reads (first-layer column not all zero)."
    )

    seconds = time.perf_counter() - start
    _say("  writing the report ...")
    index = write_report(
        args.out,
        fairness=fairness,
        online=online,
        trajectory=trajectory,
        sweep=sweep,
        epsilon=args.epsilon,
        minimisation=minimisation,
        minimisation_note=note,
        title=f"sklearn_metaedit demo: {task.name}",
        details={
            "data set": f"{task.name}, {len(task.X_train)} training rows, "
            f"{len(task.X_test)} test rows",
            "size": args.size,
            "seed": args.seed,
            "epsilon": args.epsilon,
            "run time": f"{seconds:.0f} s",
        },
    )
    print(f"\nReport: {index}")
    _say(f"\nDone in {time.perf_counter() - start:.0f} s.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sklearn_metaedit")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compare the estimators with their peers on bundled data")
    d.add_argument("--dataset", choices=["adult", "german"], default="adult")
    d.add_argument(
        "--sensitive", default=None, help="sex (default), race (adult), age_group (german)"
    )
    d.add_argument("--epsilon", type=float, default=0.05)
    d.add_argument(
        "--size", choices=sorted(SIZES), default="full", help="quick: fewer steps and networks"
    )
    d.add_argument(
        "--quick", dest="size", action="store_const", const="quick", help="same as --size quick"
    )
    d.add_argument("--out", type=Path, default=Path("demo_report"), help="report folder")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    d.set_defaults(func=demo)
    args = parser.parse_args(argv)
    if args.command == "demo" and args.sensitive is None:
        args.sensitive = "sex"
    return args.func(args)
