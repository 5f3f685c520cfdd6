"""Benchmark: the GPU rows. The exact projection against one torch.sort, and the fairness
layer's training time per epoch against the unconstrained network's, on a CUDA device.

Part 1: ``project_parity`` at 10^6 and 10^7 rows (K = 2 and K = 5 groups, float32 and
float64, epsilon = 0.05), forward and forward + backward, against one ``torch.sort`` of
the same values on the same device. Times are medians over repeats, each call followed
by ``torch.cuda.synchronize()``; the compared functions are timed in alternation.

Part 2: seconds per training epoch (skorch's own ``dur``, median over the epochs after
the first) of the same network trained plain and inside ``FairnessLayerClassifier``:
an MLP on the bundled Adult training split, and a small CNN on scikit-learn's digit
images shaped ``(n, 1, 8, 8)``; with each, accuracy and selection-rate gap on the
training rows.

Writes ``benchmarks/results/gpu.{json,md}`` (``results/quick/`` with ``--quick``). On a
machine without CUDA, a full run measures nothing, writes nothing and says so (exit
status 0, so that ``make bench`` goes on); ``--quick`` then runs on the CPU at small
sizes (seconds), so that the script keeps working, and names the CPU in its table.
``benchmarks/run_gpu_checks.sh`` runs this script with the ``cuda`` tests.

    python benchmarks/bench_gpu.py [--quick] [--device cuda] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch
from _results import add_out_argument, results_folder
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_metaedit import MLP, FairnessLayerClassifier
from sklearn_metaedit.fairness import project_parity
from sklearn_metaedit.metrics import selection_rate_gap

EPSILON = 0.05


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _instance(n: int, n_groups: int, dtype: torch.dtype, device: torch.device, seed: int):
    """Scores whose group means differ by far more than epsilon, made on ``device``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    groups = torch.randint(0, n_groups, (n,), generator=generator, device=device)
    powers = torch.linspace(0.5, 2.0, n_groups, dtype=torch.float64, device=device)[groups]
    uniform = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    scores = (uniform**powers).to(dtype)
    weights = torch.randn(n, generator=generator, dtype=dtype, device=device)
    return scores, groups, weights


def _medians(functions: dict, repeats: int, device: torch.device) -> dict:
    for function in functions.values():
        function()  # warm-up: kernels compiled, memory pools grown
    _synchronize(device)
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            _synchronize(device)
            start = time.perf_counter()
            function()
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def projection_rows(sizes, group_counts, repeats: int, device: torch.device) -> list[dict]:
    rows = []
    for n in sizes:
        for n_groups in group_counts:
            for dtype in (torch.float32, torch.float64):
                scores, groups, weights = _instance(n, n_groups, dtype, device, seed=n_groups)

                def sort(scores=scores):
                    return torch.sort(scores)

                def forward(scores=scores, groups=groups, n_groups=n_groups):
                    return project_parity(scores, groups, EPSILON, n_groups=n_groups)

                def both(scores=scores, groups=groups, n_groups=n_groups, weights=weights):
                    s = scores.clone().requires_grad_(True)
                    z = project_parity(s, groups, EPSILON, n_groups=n_groups)
                    (z * weights).sum().backward()

                z = forward()
                means = torch.stack([z[groups == g].double().mean() for g in range(n_groups)])
                medians = _medians(
                    {"sort": sort, "forward": forward, "both": both}, repeats, device
                )
                rows.append(
                    {
                        "n": n,
                        "groups": n_groups,
                        "dtype": str(dtype).replace("torch.", ""),
                        "sort_ms": 1e3 * medians["sort"],
                        "forward_ms": 1e3 * medians["forward"],
                        "forward_backward_ms": 1e3 * medians["both"],
                        "forward_over_sort": medians["forward"] / medians["sort"],
                        "forward_backward_over_sort": medians["both"] / medians["sort"],
                        "gap": float(means.max() - means.min()),
                    }
                )
                del scores, groups, weights, z
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


class DigitCNN(nn.Module):
    """Two convolutions and a linear head for 8 x 8 one-channel images."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(channels * 16, 2),
        )

    def forward(self, X):
        return self.body(X)


def _tasks(quick: bool):
    """(name, X, y, groups, net parameters) of the training rows."""
    from sklearn.datasets import load_digits

    from sklearn_metaedit.datasets import load_adult, make_preprocessor

    adult = load_adult(split="train")
    rows = slice(0, 2000) if quick else slice(None)
    X_adult = make_preprocessor(drop=("sex", "race")).fit_transform(adult.data.iloc[rows])
    y_adult = adult.target.to_numpy()[rows]
    sex = adult.sensitive["sex"].to_numpy()[rows]
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    if not quick:
        # 20 shifted copies, so that an epoch is long enough to time
        images = np.concatenate([np.roll(images, k % 3 - 1, axis=3 - k % 2) for k in range(20)])
    labels = np.tile(digits.target, len(images) // len(digits.target))
    ink = images.reshape(len(images), -1).sum(axis=1)
    return [
        (
            "MLP (64, 64), Adult",
            np.asarray(X_adult, dtype=np.float32),
            y_adult,
            sex,
            {"module": MLP, "module__hidden_sizes": (64, 64), "batch_size": 512},
        ),
        (
            "CNN, digit images (n, 1, 8, 8)",
            images,
            (labels % 2 == 0).astype(np.int64),
            np.where(ink > np.median(ink), "heavy", "light"),
            {"module": DigitCNN, "batch_size": 256},
        ),
    ]


def _seconds_per_epoch(net) -> float:
    durations = [row["dur"] for row in net.history]
    return statistics.median(durations[1:] if len(durations) > 1 else durations)


def training_rows(quick: bool, device: torch.device) -> list[dict]:
    rows = []
    max_epochs = 2 if quick else 6
    for name, X, y, groups, params in _tasks(quick):
        net = NeuralNetClassifier(
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=1e-3,
            max_epochs=max_epochs,
            train_split=None,
            verbose=0,
            device=str(device),
            **params,
        )
        if params["module"] is MLP:
            net.set_params(module__n_features=X.shape[1])
        torch.manual_seed(0)
        plain = net.fit(X, y)
        plain_pred = plain.predict(X)
        layer = FairnessLayerClassifier(net, epsilon=EPSILON, random_state=0)
        layer.fit(X, y, sensitive_features=groups)
        layer_pred = layer.predict(X, sensitive_features=groups)
        plain_s, layer_s = _seconds_per_epoch(plain), _seconds_per_epoch(layer.estimator_)
        rows.append(
            {
                "task": name,
                "n": len(y),
                "batch_size": params["batch_size"],
                "plain_s_per_epoch": plain_s,
                "layer_s_per_epoch": layer_s,
                "layer_over_plain": layer_s / plain_s,
                "plain_accuracy": float(np.mean(plain_pred == y)),
                "layer_accuracy": float(np.mean(layer_pred == y)),
                "plain_gap": selection_rate_gap(plain_pred, sensitive_features=groups),
                "layer_gap": selection_rate_gap(layer_pred, sensitive_features=groups),
            }
        )
    return rows


def to_markdown(device_name: str, projection: list[dict], training: list[dict]) -> str:
    lines = [
        f"Device: {device_name}.",
        "",
        f"Projection against one torch.sort of the same values (epsilon = {EPSILON}, "
        "median times):",
        "",
        "| n | K | dtype | sort ms | forward ms | forward + backward ms | forward / sort | "
        "forward + backward / sort | gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in projection:
        lines.append(
            f"| {r['n']:,} | {r['groups']} | {r['dtype']} | {r['sort_ms']:.2f} | "
            f"{r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} | "
            f"{r['forward_over_sort']:.2f} | {r['forward_backward_over_sort']:.2f} | "
            f"{r['gap']:.2e} |"
        )
    lines += [
        "",
        f"Training time per epoch, plain and with FairnessLayerClassifier (epsilon = {EPSILON}):",
        "",
        "| task | rows | batch | plain s/epoch | layer s/epoch | layer / plain | "
        "plain accuracy | layer accuracy | plain gap | layer gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in training:
        lines.append(
            f"| {r['task']} | {r['n']:,} | {r['batch_size']} | {r['plain_s_per_epoch']:.3f} | "
            f"{r['layer_s_per_epoch']:.3f} | {r['layer_over_plain']:.2f} | "
            f"{r['plain_accuracy']:.4f} | {r['layer_accuracy']:.4f} | {r['plain_gap']:.4f} | "
            f"{r['layer_gap']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> str:
    """Run the benchmark, write its JSON and markdown, and return the markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        if not args.quick:
            # `make bench` runs every script: on a machine without a GPU this one has
            # nothing to measure, and says so
            print(
                "bench_gpu.py: torch finds no CUDA device here, nothing measured; run it on "
                "a GPU machine (or pass --device cpu, or --quick for the small CPU run).",
                file=sys.stderr,
            )
            sys.exit(0)
        device = torch.device("cpu")
    if device.type == "cuda":
        device_name = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        device_name = f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    if args.quick:
        projection = projection_rows([10_000], [2], repeats=3, device=device)
    else:
        projection = projection_rows([1_000_000, 10_000_000], [2, 5], repeats=11, device=device)
    training = training_rows(args.quick, device)
    markdown = to_markdown(device_name, projection, training)
    out = results_folder(args)
    payload = {
        "command": "python benchmarks/bench_gpu.py"
        + (" --quick" if args.quick else "")
        + (f" --device {args.device}" if args.device != "cuda" else ""),
        "device": device_name,
        "torch": torch.__version__,
        "epsilon": EPSILON,
        "projection_vs_sort": projection,
        "training_per_epoch": training,
    }
    (out / "gpu.json").write_text(json.dumps(payload, indent=2))
    (out / "gpu.md").write_text(markdown + "\n")
    print(markdown)
    return markdown


if __name__ == "__main__":
    main()
