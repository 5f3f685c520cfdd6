"""Benchmark: thread counts for small networks, on a machine as it is and beside busy processes.

Two workloads, each run in a fresh process so that no thread setting carries over:

- ``FairnessLayerClassifier``: the README's example (an MLP through the parity layer on
  UCI Adult, 10 epochs, then predicting the test split);
- ``ExponentiatedGradient``: fairlearn's reduction over a logistic regression on German
  credit, whose time goes to the BLAS libraries through scipy and scikit-learn.

Each with one thread (``set_thread_limit(1)``, the package's default, and the BLAS and
OpenMP pools held to one with ``threadpoolctl``) and with the libraries' defaults (one
thread per core: ``set_thread_limit(None)``, no ``threadpoolctl`` limit), first on the
machine as it is (no process added by the benchmark; the load average of the machine,
other work included, is recorded), then beside ``--busy``
processes that each keep a core busy (``yes > /dev/null``), the two settings back to back,
``--rounds`` times. Reported: wall-clock and CPU seconds (user + system of the process),
medians over rounds, and the workload's test accuracy.

Writes ``benchmarks/results/threads.{json,md}`` (``results/quick/`` with ``--quick``).

    python benchmarks/bench_threads.py [--quick] [--busy N] [--rounds N] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from _results import add_out_argument, results_folder

WORKLOADS = {
    "FairnessLayerClassifier": """
import torch
from skorch import NeuralNetClassifier
from sklearn_metaedit import MLP, FairnessLayerClassifier, set_thread_limit
from sklearn_metaedit.datasets import load_adult, make_preprocessor
set_thread_limit(LIMIT)
train, test = load_adult(split="train"), load_adult(split="test")
rows = slice(None, ROWS)
pre = make_preprocessor(drop=("sex", "race"))
X_train, X_test = pre.fit_transform(train.data[rows]), pre.transform(test.data)
net = NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                          lr=1e-3, batch_size=256, max_epochs=EPOCHS, train_split=None,
                          verbose=0)
clf = FairnessLayerClassifier(net, epsilon=0.05, random_state=0)
clf.fit(X_train, train.target[rows], sensitive_features=train.sensitive["sex"][rows])
y_pred = clf.predict(X_test, sensitive_features=test.sensitive["sex"])
ACCURACY = float((y_pred == test.target).mean())
""",
    "ExponentiatedGradient": """
import contextlib
from fairlearn.reductions import DemographicParity, ExponentiatedGradient
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits
from sklearn_metaedit.datasets import load_german_credit, make_preprocessor
data = load_german_credit()
X = make_preprocessor().fit_transform(data.data)
X_train, X_test, y_train, y_test, s_train, _ = train_test_split(
    X, data.target, data.sensitive["sex"], test_size=0.3, random_state=0,
    stratify=data.target)
limit = contextlib.nullcontext() if LIMIT is None else threadpool_limits(limits=LIMIT)
with limit:
    mitigator = ExponentiatedGradient(LogisticRegression(max_iter=ITER),
                                      DemographicParity(difference_bound=0.05), eps=0.01)
    mitigator.fit(X_train, y_train, sensitive_features=s_train)
    ACCURACY = float((mitigator.predict(X_test, random_state=0) == y_test).mean())
""",
}


def _run_once(workload: str, limit: int | None, quick: bool) -> dict:
    """Run ``workload`` in a fresh process; its wall-clock and CPU seconds and accuracy."""
    code = (
        WORKLOADS[workload]
        .replace("LIMIT", repr(limit))
        .replace("ROWS", "2000" if quick else "None")
        .replace("EPOCHS", "1" if quick else "10")
        .replace("ITER", "100" if quick else "1000")
    )
    code += "\nprint(ACCURACY)\n"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise RuntimeError(f"{workload} failed:\n{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "accuracy": float(result.stdout.split()[-1])}


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(n)]


def run(quick: bool, busy: int, rounds: int) -> list[dict]:
    rows = []
    settings = {"one thread": 1, "one per core (libraries' default)": None}
    conditions = [
        ("no process added", 0),
        (f"beside {busy} busy process{'es' if busy != 1 else ''} added", busy),
    ]
    # the quick run (CI) checks that the script works: one workload, as the machine is
    workloads = ["FairnessLayerClassifier"] if quick else list(WORKLOADS)
    for condition, n_busy in conditions[:1] if quick else conditions:
        for round_ in range(rounds):
            for workload in workloads:
                for setting, limit in settings.items():
                    print(f"{condition}, {workload}, {setting} ...", file=sys.stderr, flush=True)
                    load = os.getloadavg()[0]
                    processes = _busy(n_busy)
                    try:
                        measured = _run_once(workload, limit, quick)
                    finally:
                        for process in processes:
                            process.kill()
                            process.wait()
                    rows.append(
                        {
                            "condition": condition,
                            "workload": workload,
                            "threads": setting,
                            "round": round_,
                            "load_average_before": load,
                            **measured,
                        }
                    )
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    keys = []
    for row in rows:
        key = (row["condition"], row["workload"], row["threads"])
        if key not in keys:
            keys.append(key)
    summary = []
    for condition, workload, threads in keys:
        runs = [
            r
            for r in rows
            if (r["condition"], r["workload"], r["threads"]) == (condition, workload, threads)
        ]
        summary.append(
            {
                "condition": condition,
                "workload": workload,
                "threads": threads,
                "wall_s": statistics.median(r["wall_s"] for r in runs),
                "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                "accuracy": statistics.median(r["accuracy"] for r in runs),
                "load_average": statistics.median(r["load_average_before"] for r in runs),
                "rounds": len(runs),
            }
        )
    return summary


def to_markdown(summary: list[dict], payload: dict) -> str:
    lines = [
        "### Thread counts for small networks",
        "",
        f"{payload['machine']}; medians of {payload['rounds']} round(s), the two settings "
        "back to back; wall-clock and CPU seconds of the whole process (imports and data "
        "loading included); load: the machine's 1-minute load average as each run started "
        "(other work included).",
        "",
        "| condition | workload | threads | wall s | CPU s | accuracy | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        lines.append(
            f"| {r['condition']} | {r['workload']} | {r['threads']} | {r['wall_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['accuracy']:.4f} | {r['load_average']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CI-sized run")
    parser.add_argument("--busy", type=int, default=1, help="busy processes; default 1")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    rows = run(args.quick, args.busy, rounds)
    summary = summarise(rows)
    payload = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "quick": args.quick,
        "busy": args.busy,
        "rounds": rounds,
        "rows": rows,
        "summary": summary,
    }
    out = results_folder(args)
    (out / "threads.json").write_text(json.dumps(payload, indent=2))
    markdown = to_markdown(summary, payload)
    (out / "threads.md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
