"""Benchmark: OnlineFairPredictor against its peers on Adult's test split as a stream.

Streams: Adult's test split (groups: sex) shuffled with a fixed seed, and a drifting
stream whose first half is 90% men and second half 43% men (16,000 rows). Batch sizes 1,
8 and 64; epsilon in {0.02, 0.05}. Methods, all on the same logistic regression fitted
on the training split (its probabilities computed once, so that decisions/s measures
each method's own work):

- ``OnlineFairPredictor`` (``partial_predict`` batch after batch);
- the within-batch primal-dual of Troxell et al. (ICML 2026), re-implemented from its
  description (``sklearn_metaedit.demo.within_batch_primal_dual``);
- fairlearn's ``ThresholdOptimizer`` fitted offline on the training split, with
  ``tol=epsilon`` and with exact parity (``tol=None``); it decides each row on its own
  (randomised), so its decisions come from one call, and its decisions/s at each batch
  size is timed over the first 1,000 rows;
- the unconstrained model.

Columns: pooled selection-rate gap over the whole stream and over its last half,
accuracy, decisions per second, and for ``OnlineFairPredictor`` the bound its report
guarantees. Then two timings: ``predict`` on a whole stream at batch size 1 (the
decisions are made one row at a time; the model's probabilities in one vectorised
pass, timed with it), and the package's own overhead per one-row ``partial_predict``
(a constant model's cost subtracted).

Writes ``benchmarks/results/online.{json,md}`` (``results/quick/`` with ``--quick``).

    python benchmarks/bench_online.py [--quick] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import timeit

import numpy as np
import pandas as pd
from _results import add_out_argument, one_thread, results_folder
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from sklearn_metaedit import OnlineFairPredictor
from sklearn_metaedit.demo import (
    drifting_order,
    load_task,
    stream_summary,
    within_batch_primal_dual,
)

#: Rows over which ThresholdOptimizer's batch-by-batch speed is timed.
TIMED_ROWS = 1000


class ScoreColumn(ClassifierMixin, BaseEstimator):
    """A fitted "model" whose input is its own probability of the positive class.

    Feeding every method the same precomputed probabilities as a one-column X makes
    decisions/s measure the method, not the base model.
    """

    def fit(self, X, y):
        return self

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def predict_proba(self, X) -> np.ndarray:
        p = np.asarray(X, dtype=np.float64)[:, 0]
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (np.asarray(X)[:, 0] >= 0.5).astype(np.int64)

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _batches(n: int, batch_size: int):
    return [slice(i, i + batch_size) for i in range(0, n, batch_size)]


def run(quick: bool, seed: int) -> tuple[pd.DataFrame, dict]:
    task = load_task("adult", "sex", random_state=seed)
    model = LogisticRegression(max_iter=1000).fit(task.X_train, task.y_train)
    p_train = model.predict_proba(task.X_train)[:, 1].astype(np.float64)
    p_test = model.predict_proba(task.X_test)[:, 1].astype(np.float64)
    P_train = p_train[:, None]
    streams = {
        "shuffled": np.random.default_rng(seed).permutation(len(p_test)),
        "drifting": drifting_order(task.s_test, "Male", random_state=seed),
    }
    if quick:
        # Every fifth row keeps the drifting stream's two halves.
        streams = {name: order[::5] for name, order in streams.items()}
    batch_sizes = (1, 64) if quick else (1, 8, 64)
    epsilons = (0.05,) if quick else (0.02, 0.05)
    rows = []
    for epsilon in epsilons:
        online = OnlineFairPredictor(ScoreColumn(), epsilon=epsilon, prefit=True)
        online.fit(P_train, task.y_train, sensitive_features=task.s_train)
        optimizers = {
            f"ThresholdOptimizer (tol={epsilon})": epsilon,
            "ThresholdOptimizer (exact parity)": None,
        }
        optimizers = {
            name: ThresholdOptimizer(
                estimator=ScoreColumn(), prefit=True, predict_method="predict_proba", tol=tol
            ).fit(P_train, task.y_train, sensitive_features=task.s_train)
            for name, tol in optimizers.items()
        }
        codes = (task.s_test == "Male").astype(np.int64)
        for stream, order in streams.items():
            p, y, s, c = p_test[order], task.y_test[order], task.s_test[order], codes[order]
            X = p[:, None]
            print(f"epsilon={epsilon}, {stream} stream ...", file=sys.stderr, flush=True)
            for batch_size in batch_sizes:
                parts = _batches(len(p), batch_size)
                methods = {}
                online.reset()
                tic = time.perf_counter()
                decisions = [online.partial_predict(X[b], sensitive_features=s[b]) for b in parts]
                methods["OnlineFairPredictor"] = (
                    np.concatenate(decisions),
                    time.perf_counter() - tic,
                )
                report = online.report()
                tic = time.perf_counter()
                decisions = within_batch_primal_dual(p, c, batch_size=batch_size, epsilon=epsilon)
                methods["within-batch primal-dual"] = (decisions, time.perf_counter() - tic)
                for name, optimizer in optimizers.items():
                    # Each row is decided on its own, so the decisions come from one call;
                    # fairlearn's per-call cost makes batch size 1 slow, so its speed is
                    # timed on the first rows only.
                    decisions = optimizer.predict(X, sensitive_features=s, random_state=seed)
                    timed = parts[: max(1, TIMED_ROWS // batch_size)]
                    rng = np.random.RandomState(seed)
                    tic = time.perf_counter()
                    for b in timed:
                        optimizer.predict(X[b], sensitive_features=s[b], random_state=rng)
                    rate = sum(len(p[b]) for b in timed) / (time.perf_counter() - tic)
                    methods[name] = (decisions, len(p) / rate)
                tic = time.perf_counter()
                decisions = [(p[b] >= 0.5).astype(np.int64) for b in parts]
                methods["unconstrained"] = (np.concatenate(decisions), time.perf_counter() - tic)
                for method, (decisions, seconds) in methods.items():
                    summary = stream_summary(y, decisions, s)
                    rows.append(
                        {
                            "stream": stream,
                            "epsilon": epsilon,
                            "batch_size": batch_size,
                            "method": method,
                            **summary,
                            "gap_within_epsilon": summary["pooled_gap"] <= epsilon,
                            "decisions_per_second": len(decisions) / seconds,
                            "guaranteed_gap": report.bound
                            if method == "OnlineFairPredictor"
                            else float("nan"),
                        }
                    )
    return pd.DataFrame(rows), _throughput(task, model, streams["shuffled"], seed)


def _throughput(task, model, order, seed) -> dict:
    """predict over a whole stream at batch size 1, and one-row partial_predict overhead."""
    online = OnlineFairPredictor(model, epsilon=0.05, prefit=True)
    online.fit(task.X_train, task.y_train, sensitive_features=task.s_train)
    X, s = task.X_test[order], task.s_test[order]
    best = min(timeit.repeat(lambda: online.predict(X, sensitive_features=s), number=1, repeat=5))
    proba_only = min(timeit.repeat(lambda: model.predict_proba(X), number=1, repeat=5))

    constant = OnlineFairPredictor(ScoreColumn(), epsilon=0.05, prefit=True)
    P_train = model.predict_proba(task.X_train)[:, 1].astype(np.float64)[:, None]
    constant.fit(P_train, task.y_train, sensitive_features=task.s_train)
    row, group = np.array([[0.3]]), s[:1]
    n = 5000
    per_call = min(
        timeit.repeat(
            lambda: constant.partial_predict(row, sensitive_features=group), number=n, repeat=5
        )
    )
    model_cost = min(
        timeit.repeat(lambda: constant.estimator_.predict_proba(row), number=n, repeat=5)
    )
    return {
        "stream_rows": len(order),
        "predict_decisions_per_second": len(order) / best,
        "predict_seconds": best,
        "base_model_predict_proba_seconds": proba_only,
        "partial_predict_overhead_us": (per_call - model_cost) / n * 1e6,
    }


def to_markdown(table: pd.DataFrame, speed: dict, command: str) -> str:
    lines = [
        "Adult test split as a stream (groups: sex), logistic regression base model. "
        "Pooled gap: largest minus smallest selection rate over every decision of the "
        "stream; bound: the gap OnlineFairPredictor's report guarantees for that stream.",
        "",
        "| stream | ε | batch | method | pooled gap | gap, last half | accuracy | "
        "decisions/s | pooled gap ≤ ε | guaranteed gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        bound = "" if np.isnan(row.guaranteed_gap) else f"{row.guaranteed_gap:.4f}"
        lines.append(
            f"| {row.stream} | {row.epsilon} | {row.batch_size} | {row.method} | "
            f"{row.pooled_gap:.4f} | {row.gap_last_half:.4f} | {row.accuracy:.4f} | "
            f"{row.decisions_per_second:,.0f} | {'yes' if row.gap_within_epsilon else 'no'} | "
            f"{bound} |"
        )
    lines += [
        "",
        f"`OnlineFairPredictor.predict` on the whole shuffled stream ({speed['stream_rows']:,} "
        f"rows, decided one row at a time): {speed['predict_decisions_per_second']:,.0f} "
        f"decisions/s ({speed['predict_seconds'] * 1e3:.1f} ms, of which the base model's "
        f"vectorised predict_proba {speed['base_model_predict_proba_seconds'] * 1e3:.1f} ms). "
        f"One-row `partial_predict`: {speed['partial_predict_overhead_us']:.1f} µs of this "
        "package's own overhead per call (base model excluded).",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    add_out_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    one_thread()
    out = results_folder(args)
    command = "python benchmarks/bench_online.py" + (" --quick" if args.quick else "")
    start = time.perf_counter()
    table, speed = run(args.quick, args.seed)
    markdown = to_markdown(table, speed, command)
    payload = {
        "command": command,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "seconds": time.perf_counter() - start,
        "throughput": speed,
        "rows": table.to_dict(orient="records"),
    }
    (out / "online.json").write_text(json.dumps(payload, indent=2, default=float))
    (out / "online.md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
