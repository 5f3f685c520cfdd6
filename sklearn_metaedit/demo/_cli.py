"""The command line ``python -m sklearn_metaedit demo``: its options and its run.

Every option is checked when the command line is parsed, before anything is loaded or
trained: a bad one ends the command at once with argparse's usage message and exit
status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._tasks import TabularTask


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# per size: training rows of the fairness and online parts (None: all), optimiser steps
# of the batch methods, the editor sweep's settings, and the run time to expect per data
# set on one free CPU core (measured from CPU time; a busy machine takes longer). The quick
# run lasted a minute on Adult with 200 editor steps, twice, where the editor's accuracy
# levels off within 60 on the quick population, and with ExponentiatedGradient refitting a
# logistic regression on all 32,561 training rows up to 50 times (as often at epsilon=0).
SIZES = {
    "quick": {
        "train_rows": 10_000,
        "steps": 300,
        "n_networks": 10,
        "n_held_out": 3,
        "max_steps": 60,
        "expected": {"adult": "about half a minute", "german": "about 20 seconds"},
    },
    "full": {
        "train_rows": None,
        "steps": 1200,
        "n_networks": 20,
        "n_held_out": 5,
        "max_steps": 600,
        "expected": {"adult": "about 2 minutes", "german": "about a minute"},
    },
}
SPARSITIES = (0.5, 0.8, 0.9, 0.95)
# The group attributes of each bundled data set (the columns of its loader's
# ``sensitive`` frame), the first being the default.
SENSITIVE = {
    "adult": ("sex", "race"),
    "german": ("sex", "age_group"),
}
# The parity gap the estimators accept: 0 <= epsilon < 1, as in the ``_parameter_constraints``
# of FairnessLayerClassifier and OnlineFairPredictor; 0 asks for exact parity. Checked here
# rather than by the estimators, which would load torch and train first.
EPSILON_RANGE = (0.0, 1.0)
# numpy's legacy RandomState, which scikit-learn and fairlearn seed, takes 0 <= seed < 2**32
SEED_RANGE = (0, 2**32 - 1)
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


def _training_sample(task: TabularTask, n_rows: int | None, random_state: int) -> TabularTask:
    """``task`` with at most ``n_rows`` training rows, drawn stratified by group and label.

    The test split is kept whole, so that every method is still scored on all of it.
    """
    if n_rows is None or len(task.y_train) <= n_rows:
        return task
    import numpy as np
    from sklearn.model_selection import train_test_split

    groups = np.unique(task.s_train, return_inverse=True)[1]
    rows, _ = train_test_split(
        np.arange(len(task.y_train)),
        train_size=n_rows,
        stratify=groups * 2 + task.y_train,
        random_state=random_state,
    )
    rows.sort()
    return dataclasses.replace(
        task, X_train=task.X_train[rows], y_train=task.y_train[rows], s_train=task.s_train[rows]
    )


def demo(args: argparse.Namespace) -> int:
    """Run the package's estimators beside their peers on a bundled data set; write a report."""
    _say(
        f"The {args.size} demo on {args.dataset} (sensitive feature: {args.sensitive}, "
        f"epsilon={args.epsilon:g}) takes {SIZES[args.size]['expected'][args.dataset]} on "
        "one free CPU core."
    )
    from ._report import _pyplot

    # the report's figures need matplotlib: say so before minutes of work, not after
    _pyplot()

    import torch
    from threadpoolctl import threadpool_limits

    # loads scikit-learn's and scipy's BLAS: threadpoolctl limits only the pools loaded
    from . import _editing, _fairness, _online  # noqa: F401

    # tabular MLPs are small: one intra-op thread is faster than several. The BLAS and
    # OpenMP pools are held to as many: on a machine whose cores are busy, their default
    # (one thread per core) made the logistic regressions of the fairness peers ten
    # times slower.
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

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
    n_rows = len(task.X_train)
    task = _training_sample(task, size["train_rows"], args.seed)
    sampled = "" if len(task.X_train) == n_rows else f" (a stratified sample of {n_rows})"
    _say(
        f"  {len(task.X_train)} training rows{sampled}, {len(task.X_test)} test rows, "
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
            "data set": f"{task.name}, {len(task.X_train)} training rows{sampled}, "
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


def _epsilon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    low, high = EPSILON_RANGE
    # written so that nan fails too
    if not low <= value < high:
        raise argparse.ArgumentTypeError(
            f"the parity gap allowed must be at least {low:g} (exact parity) and below "
            f"{high:g}, got {text}"
        )
    return value


def _integer(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}, got {value}")
    return value


def _seed(text: str) -> int:
    return _integer(text, *SEED_RANGE, "the seed")


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _threads(text: str) -> int:
    return _integer(text, 1, _available_cpus(), "the number of threads (at most the CPUs here)")


def _report_folder(text: str) -> Path:
    """The report folder, if it is a folder, or can be made one, that can be written in."""
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder for the report")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot make the folder {text!r}: {str(existing)!r} is a file"
        )
    # making a folder there is the one test that permissions, read-only file systems and
    # pseudo-file systems such as /proc all answer truly (os.access says yes to root)
    try:
        with tempfile.TemporaryDirectory(dir=existing):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write the report into {text!r}: making a folder in {str(existing)!r} "
            f"failed ({exc.strerror or exc})"
        ) from None
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of ``argv`` (default: ``sys.argv[1:]``), every one checked.

    Nothing is loaded or trained here: a bad option ends the program with argparse's
    usage message on stderr and exit status 2 (``SystemExit(2)``).
    """
    parser = argparse.ArgumentParser(prog="python -m sklearn_metaedit")
    sub = parser.add_subparsers(dest="command", required=True)
    pairs = "; ".join(f"{name}: {', '.join(groups)}" for name, groups in SENSITIVE.items())
    d = sub.add_parser(
        "demo",
        help="compare the estimators with their peers on bundled data",
        description="Run the package's estimators beside their peers on a bundled data set "
        "and write a report folder.",
        epilog="Run time on one free CPU core: "
        + "; ".join(
            f"--size {name}, "
            + ", ".join(f"{span} on {data}" for data, span in settings["expected"].items())
            for name, settings in SIZES.items()
        )
        + ".",
    )
    d.add_argument(
        "--dataset",
        choices=sorted(SENSITIVE),
        default="adult",
        help="the bundled data set: UCI Adult or German credit; default: adult",
    )
    d.add_argument(
        "--sensitive",
        default=None,
        metavar="FEATURE",
        help=f"the group attribute, one of the data set's ({pairs}); default: sex",
    )
    d.add_argument(
        "--epsilon",
        type=_epsilon,
        default=0.05,
        help="the parity gap allowed, 0 <= epsilon < 1 (0: exact parity); default: 0.05",
    )
    d.add_argument(
        "--size",
        choices=sorted(SIZES),
        default=None,
        help=f"quick: at most {SIZES['quick']['train_rows']:,} training rows (a stratified "
        "sample), fewer steps and networks; default: full",
    )
    d.add_argument("--quick", action="store_true", help="same as --size quick")
    d.add_argument(
        "--out",
        type=_report_folder,
        default=Path("demo_report"),
        help="the report folder, made if missing; default: demo_report",
    )
    d.add_argument("--seed", type=_seed, default=0, help=f"0 to {SEED_RANGE[1]}; default: 0")
    d.add_argument(
        "--threads",
        type=_threads,
        default=1,
        help="threads of torch and of the BLAS and OpenMP pools, at least 1 and at most "
        "the CPUs here; default: 1",
    )
    d.set_defaults(func=demo)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # the demo's usage, which lists the options, rather than the top level's
        d.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "demo":
        # checked here, not by a mutually exclusive group, which lets pass a value
        # that is the very object of the default
        if args.quick and args.size not in (None, "quick"):
            d.error(f"argument --quick: not allowed with --size {args.size}")
        args.size = "quick" if args.quick else args.size or "full"
        valid = SENSITIVE[args.dataset]
        if args.sensitive is None:
            args.sensitive = valid[0]
        elif args.sensitive not in valid:
            others = "; ".join(
                f"{name} has {', '.join(groups)}"
                for name, groups in SENSITIVE.items()
                if name != args.dataset
            )
            d.error(
                f"argument --sensitive: {args.sensitive!r} is not a sensitive feature of the "
                f"{args.dataset} data set; choose from {', '.join(valid)} ({others})"
            )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default: ``sys.argv[1:]``); return its exit status."""
    args = parse_args(argv)
    return args.func(args)
