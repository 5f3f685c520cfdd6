"""Benchmark: MetanetEditor against one-shot magnitude pruning on UCI Adult, and the cost
of building its population.

Part 1 (pruning quality): a population of MLPs (one hidden layer of 16 or 32 units) is
trained on a slice of Adult's training split; a sparsity editor is fitted on all but six
of them, and the six held-out networks are pruned to each target sparsity by one-shot
global magnitude pruning and by the editor (one forward pass each). Both meet the
sparsity exactly; the table gives the mean test accuracy over the held-out networks.

Part 2 (population cost): the same networks trained by ``make_population`` (vectorised
per architecture) and by one skorch ``fit`` after another, in one process.

Writes ``benchmarks/results/editor.{json,md}`` (``results/quick/`` with ``--quick``).

    python benchmarks/bench_editor_quick.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNetClassifier

from sklearn_metaedit._mlp import MLP
from sklearn_metaedit.datasets import load_adult, make_preprocessor
from sklearn_metaedit.editing._editor import MetanetEditor
from sklearn_metaedit.editing._graph import extract_weights, load_weights
from sklearn_metaedit.editing._population import make_population
from sklearn_metaedit.editing._requirements import magnitude_prune_weights, weight_sparsity

HERE = Path(__file__).resolve().parent


def load(n_rows: int, seed: int):
    train, test = load_adult(split="train"), load_adult(split="test")
    pre = make_preprocessor()
    X_train = pre.fit_transform(train.data).astype(np.float32)
    X_test = pre.transform(test.data).astype(np.float32)
    rows = np.random.default_rng(seed).choice(len(X_train), n_rows, replace=False)
    return X_train[rows], train.target.to_numpy()[rows], X_test, test.target.to_numpy()


def estimator(n_features: int, epochs: int) -> NeuralNetClassifier:
    return NeuralNetClassifier(
        MLP,
        module__n_features=n_features,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        batch_size=256,
        max_epochs=epochs,
        train_split=None,
        verbose=0,
    )


def accuracy(module, weights, X, y) -> float:
    with torch.no_grad():
        predictions = load_weights(module, weights).eval()(torch.as_tensor(X)).argmax(1)
    return float((predictions.numpy() == y).mean())


def run(quick: bool, seed: int) -> dict:
    n_rows, n_networks, epochs, steps = (4000, 10, 3, 60) if quick else (10000, 22, 5, 300)
    targets = (0.9,) if quick else (0.8, 0.9, 0.95)
    X, y, X_test, y_test = load(n_rows, seed)
    distributions = {"module__hidden_sizes": [(16,), (32,)]}

    started = time.perf_counter()
    population = make_population(
        estimator(X.shape[1], epochs),
        X,
        y,
        n_networks=n_networks,
        param_distributions=distributions,
        random_state=seed,
    )
    vectorised = time.perf_counter() - started
    started = time.perf_counter()
    for net in population:
        estimator(X.shape[1], epochs).set_params(
            module__hidden_sizes=net.module__hidden_sizes
        ).fit(X, y)
    sequential = time.perf_counter() - started

    train, held_out = population[:-6], population[-6:]
    rows = []
    for target in targets:
        editor = MetanetEditor(
            "sparsity",
            target=target,
            max_steps=steps,
            hidden_channels=16,
            mlp_hidden=32,
            num_layers=2,
            networks_per_step=4,
            rows_per_step=256,
            random_state=seed,
        ).fit(train, data=(X, y))
        started = time.perf_counter()
        edited = editor.transform(held_out)
        edit_seconds = (time.perf_counter() - started) / len(held_out)
        original, pruned, editor_acc, sparsity = [], [], [], []
        for net, new in zip(held_out, edited, strict=True):
            weights = extract_weights(net.module_)
            original.append(accuracy(net.module_, weights, X_test, y_test))
            magnitude = magnitude_prune_weights(weights, target)
            pruned.append(accuracy(net.module_, magnitude, X_test, y_test))
            editor_acc.append(float((new.predict(X_test) == y_test).mean()))
            sparsity.append(weight_sparsity(extract_weights(new.module_)))
        rows.append(
            {
                "target": target,
                "original": float(np.mean(original)),
                "magnitude_pruning": float(np.mean(pruned)),
                "metanet_editor": float(np.mean(editor_acc)),
                "editor_wins": int(np.sum(np.array(editor_acc) > np.array(pruned))),
                "held_out": len(held_out),
                "min_sparsity": float(np.min(sparsity)),
                "editor_fit_s": editor.fit_seconds_,
                "edit_s": edit_seconds,
            }
        )
        print(f"target {target}: {rows[-1]}", file=sys.stderr, flush=True)
    return {
        "quick": quick,
        "seed": seed,
        "n_rows": n_rows,
        "n_networks": n_networks,
        "epochs": epochs,
        "editor_steps": steps,
        "population_vectorised_s": vectorised,
        "population_sequential_s": sequential,
        "speedup": sequential / vectorised,
        "pruning": rows,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
    }


def to_markdown(result: dict) -> str:
    lines = [
        "| sparsity | original | magnitude pruning | MetanetEditor | editor wins | "
        "editor fit s | edit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["pruning"]:
        lines.append(
            f"| {row['target']:.2f} | {row['original']:.4f} | {row['magnitude_pruning']:.4f} | "
            f"{row['metanet_editor']:.4f} | {row['editor_wins']}/{row['held_out']} | "
            f"{row['editor_fit_s']:.1f} | {row['edit_s']:.3f} |"
        )
    lines += [
        "",
        f"Population of {result['n_networks']} MLPs, {result['epochs']} epochs on "
        f"{result['n_rows']} rows: make_population {result['population_vectorised_s']:.1f} s, "
        f"one skorch fit after another {result['population_sequential_s']:.1f} s "
        f"({result['speedup']:.1f}x).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(args.quick, args.seed)
    folder = HERE / "results" / ("quick" if args.quick else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "editor.json").write_text(json.dumps(result, indent=2))
    (folder / "editor.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
