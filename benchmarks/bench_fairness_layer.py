"""Benchmark: FairnessLayerClassifier against its peers on UCI Adult.

On Adult's official test split, with ``sex`` (2 groups) and
``race`` (5 groups) as the sensitive feature and epsilon in {0.02, 0.05}: test accuracy and
fairlearn's ``demographic_parity_difference`` of the 0/1 predictions for an unconstrained
skorch MLP, ``FairnessLayerClassifier``, the plain MLP projected at test time, fairlearn's
``ThresholdOptimizer`` (prefit on the same MLP) and ``ExponentiatedGradient`` over a
logistic regression. Every method in one process, on the same data and seed.

The projection's speed has a benchmark of its own, ``bench_projection_speed.py``.

Writes ``benchmarks/results/fairness_layer.{json,md}`` (``results/quick/`` with ``--quick``).

    python benchmarks/bench_fairness_layer.py [--quick] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import pandas as pd
from _results import add_out_argument, one_thread, results_folder

from sklearn_metaedit.demo import compare_fairness_layer, load_task


def run(quick: bool, seeds: list[int]) -> pd.DataFrame:
    tables = []
    settings = (
        [("sex", 0.05)] if quick else [(s, e) for s in ("sex", "race") for e in (0.02, 0.05)]
    )
    steps = 100 if quick else 1200
    for sensitive, epsilon in settings:
        task = load_task("adult", sensitive)
        if quick:
            # a CI-sized run: a slice of the training rows, a hundred steps
            task.X_train, task.y_train, task.s_train = (
                task.X_train[:8000],
                task.y_train[:8000],
                task.s_train[:8000],
            )
        for seed in seeds:
            print(
                f"adult/{sensitive}, epsilon={epsilon}, seed {seed} ...",
                file=sys.stderr,
                flush=True,
            )
            table = compare_fairness_layer(task, epsilon=epsilon, steps=steps, random_state=seed)
            tables.append(table.assign(seed=seed))
    return pd.concat(tables, ignore_index=True)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds, per task, epsilon and method (in the order run)."""
    keys = ["task", "epsilon", "method"]
    summary = runs.groupby(keys, sort=False).agg(
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        dp_gap_mean=("dp_gap", "mean"),
        dp_gap_max=("dp_gap", "max"),
        within_epsilon_every_seed=("gap_within_epsilon", "all"),
        fit_seconds=("fit_seconds", "median"),
        seeds=("seed", "count"),
    )
    return summary.reset_index().fillna({"accuracy_std": 0.0})


def to_markdown(summary: pd.DataFrame) -> str:
    lines = [
        "| task | ε | method | test accuracy (mean ± std) | DP gap mean (max) "
        "| gap ≤ ε, every seed | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(
            f"| {row.task} | {row.epsilon} | {row.method} | {row.accuracy_mean:.4f} ± "
            f"{row.accuracy_std:.4f} | {row.dp_gap_mean:.4f} ({row.dp_gap_max:.4f}) | "
            f"{'yes' if row.within_epsilon_every_seed else 'no'} | {row.fit_seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    add_out_argument(parser)
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (3; 1 quick)")
    args = parser.parse_args(argv)
    # small MLPs train faster on one thread than on several, BLAS included
    one_thread()
    n_seeds = args.seeds or (1 if args.quick else 3)
    out = results_folder(args)
    start = time.perf_counter()
    runs = run(args.quick, list(range(n_seeds)))
    summary = summarise(runs)
    markdown = to_markdown(summary)
    payload = {
        "command": "python benchmarks/bench_fairness_layer.py"
        + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread",
        "seconds": time.perf_counter() - start,
        "summary": summary.to_dict(orient="records"),
        "runs": runs.to_dict(orient="records"),
    }
    (out / "fairness_layer.json").write_text(json.dumps(payload, indent=2))
    (out / "fairness_layer.md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
