"""Benchmark: the exact parity projection against cvxpylayers, and against one torch.sort.

Part 1: forward + backward time of ``project_parity`` and of a ``CvxpyLayer`` of the same
problem (the scores and the group structure are its parameters) at n in {256, 1024, 4096},
K = 2 groups, epsilon = 0.05, with the largest difference between their solutions.

Part 2: 10^6 rows with K = 2 and K = 5: forward and forward + backward time of
``project_parity`` against one ``torch.sort`` of 10^6 values.

Everything runs side by side in one process, the compared functions timed in
alternation so that they share the machine's load; times are medians over repeats, and
ratios are taken between timings measured in the same run. Writes
``benchmarks/results/projection_speed.{json,md}`` (``results/quick/`` with ``--quick``,
a seconds-long run with fewer repeats and smaller sizes).

    python benchmarks/bench_projection_speed.py [--quick] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import cvxpy as cp
import torch
from _results import add_out_argument, results_folder

from sklearn_metaedit.fairness import project_parity

EPSILON = 0.05


def _instance(n: int, n_groups: int, seed: int):
    """Scores whose group means differ by far more than epsilon."""
    generator = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, n_groups, (n,), generator=generator)
    groups[:n_groups] = torch.arange(n_groups)
    powers = torch.linspace(0.5, 2.0, n_groups, dtype=torch.float64)[groups]
    scores = torch.rand(n, generator=generator, dtype=torch.float64) ** powers
    weights = torch.randn(n, generator=generator, dtype=torch.float64)
    return scores, groups, weights


def _interleaved_medians(functions: dict, repeats: dict) -> dict:
    """Median seconds of each function, timed in alternation so that they share the
    machine's load; ``repeats[name]`` calls of each over ``max(repeats)`` rounds."""
    for function in functions.values():
        function()  # warm-up: first-call allocations and solver set-up are not steady state
    rounds = max(repeats.values())
    times = {name: [] for name in functions}
    for round_ in range(rounds):
        for name, function in functions.items():
            # a function with fewer repeats runs in evenly spread rounds only
            if (round_ * repeats[name]) // rounds != ((round_ + 1) * repeats[name]) // rounds:
                start = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _cvxpy_layer(n: int, n_groups: int):
    from cvxpylayers.torch import CvxpyLayer

    z = cp.Variable(n)
    lower = cp.Variable()
    scores = cp.Parameter(n)
    membership = cp.Parameter((n_groups, n))  # row g: 1 / n_g on the rows of group g
    means = membership @ z
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(z - scores)),
        [z >= 0, z <= 1, means >= lower, means <= lower + EPSILON],
    )
    return CvxpyLayer(problem, parameters=[scores, membership], variables=[z])


def _membership(groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(groups, n_groups).T.to(torch.float64)
    return onehot / onehot.sum(1, keepdim=True)


def compare_with_cvxpylayers(sizes, repeats: int, layer_repeats: int) -> list[dict]:
    rows = []
    for n in sizes:
        scores, groups, weights = _instance(n, 2, seed=n)

        def exact(scores=scores, groups=groups, weights=weights):
            s = scores.clone().requires_grad_(True)
            z = project_parity(s, groups, EPSILON, n_groups=2)
            (z * weights).sum().backward()
            return z.detach(), s.grad

        layer = _cvxpy_layer(n, 2)
        membership = _membership(groups, 2)

        def reference(scores=scores, weights=weights, layer=layer, membership=membership):
            s = scores.clone().requires_grad_(True)
            (z,) = layer(s, membership)
            (z * weights).sum().backward()
            return z.detach(), s.grad

        z_exact, grad_exact = exact()
        z_layer, grad_layer = reference()
        medians = _interleaved_medians(
            {"exact": exact, "layer": reference}, {"exact": repeats, "layer": layer_repeats}
        )
        exact_s, layer_s = medians["exact"], medians["layer"]
        rows.append(
            {
                "n": n,
                "groups": 2,
                "epsilon": EPSILON,
                "project_parity_ms": 1e3 * exact_s,
                "cvxpylayers_ms": 1e3 * layer_s,
                "speedup": layer_s / exact_s,
                "max_abs_diff_z": float((z_exact - z_layer).abs().max()),
                "max_abs_diff_grad": float((grad_exact - grad_layer).abs().max()),
            }
        )
    return rows


def compare_with_sort(n: int, group_counts, repeats: int) -> list[dict]:
    rows = []
    for n_groups in group_counts:
        for dtype in (torch.float32, torch.float64):
            scores, groups, weights = _instance(n, n_groups, seed=n_groups)
            scores, weights = scores.to(dtype), weights.to(dtype)

            def sort(scores=scores):
                return torch.sort(scores)

            def forward(scores=scores, groups=groups, n_groups=n_groups):
                return project_parity(scores, groups, EPSILON, n_groups=n_groups)

            def forward_backward(scores=scores, groups=groups, n_groups=n_groups, w=weights):
                s = scores.clone().requires_grad_(True)
                (project_parity(s, groups, EPSILON, n_groups=n_groups) * w).sum().backward()

            medians = _interleaved_medians(
                {"sort": sort, "forward": forward, "both": forward_backward},
                dict.fromkeys(("sort", "forward", "both"), repeats),
            )
            sort_s, forward_s, both_s = medians["sort"], medians["forward"], medians["both"]
            rows.append(
                {
                    "n": n,
                    "groups": n_groups,
                    "dtype": str(dtype).replace("torch.", ""),
                    "sort_ms": 1e3 * sort_s,
                    "forward_ms": 1e3 * forward_s,
                    "forward_backward_ms": 1e3 * both_s,
                    "forward_over_sort": forward_s / sort_s,
                    "forward_backward_over_sort": both_s / sort_s,
                }
            )
    return rows


def to_markdown(layer_rows: list[dict], sort_rows: list[dict]) -> str:
    lines = [
        f"Forward + backward, K = 2 groups, epsilon = {EPSILON} (median times):",
        "",
        "| n | project_parity ms | cvxpylayers ms | speed-up | max abs diff z | "
        "max abs diff grad |",
        "|---|---|---|---|---|---|",
    ]
    for row in layer_rows:
        lines.append(
            f"| {row['n']} | {row['project_parity_ms']:.2f} | {row['cvxpylayers_ms']:.1f} | "
            f"{row['speedup']:.0f}x | {row['max_abs_diff_z']:.1e} | "
            f"{row['max_abs_diff_grad']:.1e} |"
        )
    lines += [
        "",
        "Large batches against one torch.sort of the same number of values:",
        "",
        "| n | K | dtype | sort ms | forward ms | forward + backward ms | "
        "forward / sort | forward + backward / sort |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sort_rows:
        lines.append(
            f"| {row['n']:,} | {row['groups']} | {row['dtype']} | {row['sort_ms']:.1f} | "
            f"{row['forward_ms']:.1f} | {row['forward_backward_ms']:.1f} | "
            f"{row['forward_over_sort']:.2f} | {row['forward_backward_over_sort']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> str:
    """Run the benchmark, write its JSON and markdown, and return the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        layer_rows = compare_with_cvxpylayers([256], repeats=3, layer_repeats=2)
        sort_rows = compare_with_sort(100_000, [2], repeats=3)
    else:
        layer_rows = compare_with_cvxpylayers([256, 1024, 4096], repeats=61, layer_repeats=7)
        sort_rows = compare_with_sort(1_000_000, [2, 5], repeats=7)
    markdown = to_markdown(layer_rows, sort_rows)
    out = results_folder(args)
    payload = {
        "command": "python benchmarks/bench_projection_speed.py"
        + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "torch": torch.__version__,
        "cvxpylayers_vs_project_parity": layer_rows,
        "project_parity_vs_sort": sort_rows,
    }
    (out / "projection_speed.json").write_text(json.dumps(payload, indent=2))
    (out / "projection_speed.md").write_text(markdown + "\n")
    print(markdown)
    return markdown


if __name__ == "__main__":
    main()
