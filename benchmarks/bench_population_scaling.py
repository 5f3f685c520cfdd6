"""Benchmark: building a population with make_population on 1 and 2 dask workers.

The same population (same draws, same seeds) is built in this process with no
parallelism, and through joblib's dask backend on a ``dask.distributed`` cluster of 2
worker processes (one thread each), once confined to 1 of its workers and once on both.
The workers are warmed up first (they import torch on their first task), then the runs
alternate between the configurations so that the machine's load affects each alike.
Every build must give bit-identical networks; the table gives the median wall time, and
the speed-up of 2 workers over 1 is the median of the ratios within each repeat (runs
side by side), with the parallel efficiency (speed-up / 2).

Writes ``benchmarks/results/population_scaling.{json,md}`` (``results/quick/`` with
``--quick``).

    python benchmarks/bench_population_scaling.py [--quick] [--out FOLDER] [--scheduler ADDRESS]

With ``--scheduler tcp://host:8786`` it runs on an existing cluster instead: one of its
workers against all of them, for a measurement on real hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from _results import add_out_argument, one_thread, results_folder
from distributed import Client, LocalCluster
from joblib import parallel_config
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, make_population
from sklearn_metaedit.datasets import load_adult, make_biased_classification, make_preprocessor


def load(quick: bool):
    if quick:
        X, y, _ = make_biased_classification(600, 8, random_state=0)
        return X, y, "synthetic (600 rows, 8 features)"
    adult = load_adult(split="train")
    X = make_preprocessor().fit_transform(adult.data)
    rows = np.random.default_rng(0).choice(len(X), 8000, replace=False)
    return X[rows], adult.target.to_numpy()[rows], f"UCI Adult (8000 rows, {X.shape[1]} features)"


def settings(quick: bool, n_features: int) -> dict:
    net = NeuralNetClassifier(
        MLP,
        module__n_features=n_features,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        batch_size=256,
        max_epochs=3 if quick else 8,
        train_split=None,
        verbose=0,
    )
    return {
        "estimator": net,
        "n_networks": 8 if quick else 96,
        "param_distributions": {
            "module__hidden_sizes": [(16,), (32,), (16, 16), (32, 16)],
            "lr": [1e-3, 3e-3, 1e-2],
        },
        "random_state": 0,
        "networks_per_task": 2 if quick else 8,
    }


def build(X, y, params: dict, workers: list[str] | None = None) -> tuple[float, list]:
    """Wall time and population; ``workers`` (addresses) runs it on the dask backend."""
    started = time.perf_counter()
    if workers is None:
        population = make_population(X=X, y=y, **params)
    else:
        # the dask backend hands extra keywords to Client.submit: here, where tasks may run
        with parallel_config(backend="dask", workers=workers, allow_other_workers=False):
            population = make_population(X=X, y=y, n_jobs=len(workers), **params)
    return time.perf_counter() - started, population


def same_networks(first: list, second: list) -> bool:
    for a, b in zip(first, second, strict=True):
        sa, sb = a.module_.state_dict(), b.module_.state_dict()
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            return False
    return True


def run(quick: bool, repeats: int, scheduler: str | None) -> dict:
    X, y, data = load(quick)
    params = settings(quick, X.shape[1])
    warmup = {**params, "n_networks": 4, "networks_per_task": 1}
    one_thread()
    _, reference = build(X, y, params)
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
    else:
        cluster, client = None, Client(scheduler)
    try:
        every = sorted(client.scheduler_info()["workers"])
        configurations = {
            "in-process, no parallelism": None,
            "dask, 1 worker": every[:1],
            f"dask, {len(every)} workers": every,
        }
        times = {name: [] for name in configurations}
        # each worker imports torch on its first task: not part of the measurement
        build(X, y, warmup, every)
        identical = True
        for _ in range(repeats):
            for name, workers in configurations.items():
                seconds, population = build(X, y, params, workers)
                times[name].append(seconds)
                identical &= same_networks(reference, population)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    # the machine's load drifts between repeats: compare the runs of one repeat, which
    # ran back to back, and summarise the ratios rather than the times
    speedups = [
        one / many
        for one, many in zip(
            times["dask, 1 worker"], times[f"dask, {len(every)} workers"], strict=True
        )
    ]
    rows = [
        {
            "configuration": name,
            "median_seconds": medians[name],
            "runs_seconds": times[name],
            "networks_per_second": params["n_networks"] / medians[name],
        }
        for name in times
    ]
    return {
        "data": data,
        "n_networks": params["n_networks"],
        "networks_per_task": params["networks_per_task"],
        "max_epochs": params["estimator"].max_epochs,
        "repeats": repeats,
        "n_workers": len(every),
        "rows": rows,
        "speedups_per_repeat": speedups,
        "speedup_over_1_worker": statistics.median(speedups),
        "parallel_efficiency": statistics.median(speedups) / len(every),
        "identical_networks_everywhere": bool(identical),
        "cpu_count": os.cpu_count(),
    }


def to_markdown(payload: dict, command: str) -> str:
    lines = [
        f"Population building: {payload['n_networks']} networks ({payload['data']}, "
        f"{payload['max_epochs']} epochs, {payload['networks_per_task']} networks per task), "
        f"median of {payload['repeats']} alternating runs on a {payload['cpu_count']}-core "
        "machine.",
        "",
        "| configuration | median wall time (s) | networks / s | every run (s) |",
        "|---|---|---|---|",
    ]
    for row in payload["rows"]:
        runs = ", ".join(f"{t:.1f}" for t in row["runs_seconds"])
        lines.append(
            f"| {row['configuration']} | {row['median_seconds']:.2f} | "
            f"{row['networks_per_second']:.2f} | {runs} |"
        )
    lines += [
        "",
        f"Speed-up of {payload['n_workers']} workers over 1 (median over repeats of the "
        f"ratio within a repeat): **{payload['speedup_over_1_worker']:.2f}x**, parallel "
        f"efficiency {payload['parallel_efficiency']:.0%}; per repeat: "
        + ", ".join(f"{r:.2f}x" for r in payload["speedups_per_repeat"])
        + ". Identical networks in every configuration: "
        + ("yes." if payload["identical_networks_everywhere"] else "NO."),
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run that checks it works")
    add_out_argument(parser)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--scheduler", default=None, help="address of an existing cluster")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    payload = run(args.quick, repeats, args.scheduler)
    payload["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    payload["torch"] = torch.__version__
    command = "python benchmarks/bench_population_scaling.py" + " ".join(
        [""] + (argv if argv is not None else sys.argv[1:])
    )
    markdown = to_markdown(payload, command.strip())
    out = results_folder(args)
    (out / "population_scaling.json").write_text(json.dumps(payload, indent=2))
    (out / "population_scaling.md").write_text(markdown + "\n")
    print(markdown)
    return 0 if payload["identical_networks_everywhere"] else 1


if __name__ == "__main__":
    sys.exit(main())
