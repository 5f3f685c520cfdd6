"""Benchmark: the sparsity editor with its defaults against the one-shot pruners, on
tasks and widths that the editor benchmark does not use.

The editor benchmark (``bench_editor.py``) measures UCI Adult. Here the same comparison
runs on four other data sets and six architectures, none of which the editor's defaults
were chosen on:

- **digits**: scikit-learn's 8 x 8 digits (1,797 images, 64 standardised pixels, 10
  classes, 30% held out for testing); MLPs with one hidden layer of 128 units, and
  ("digits, two layers") MLPs 64-h-h-10, h in {16, 32, 48};
- **breast cancer**: scikit-learn's Wisconsin breast cancer set (569 rows, 30
  standardised features, 40% held out); MLPs d-h-h-2, h in {16, 32, 48};
- **German credit**: the bundled loader (1,000 rows, 30% held out,
  ``make_preprocessor``); MLPs d-h-h-2, h in {16, 32, 48};
- **synthetic**: ``make_classification`` (20,000 rows, 30 features, 12 informative, half
  held out); MLPs 30-64-64-64-2, and ("synthetic, two layers") 30-h-h-2, h in
  {16, 32, 48}.

For each task (a data set and an architecture), 30 networks are trained with
``make_population``; the first 18 fit the editor and the last 12 are held out. At
sparsity 0.9 and 0.95: ``MetanetEditor("sparsity", target=t)`` with every other setting
at its default (its untrained prior, ``max_steps=0``, beside it), data-free and given
the peers' calibration rows; Wanda, SparseGPT and exact OBC on the first 1,024 training
rows (all of them where there are fewer), with uniform and with global magnitude layer
rates; SparseGPT and OBC followed by the editor's end-to-end refinement on the same
rows. Reported: mean test accuracy over the held-out networks, the editor's paired
difference from the best one-shot pruner and from the best pruner followed by the
refinement (mean and standard error over the 12 networks, in points), and seconds per
network, timed in turn (three rounds, each method's median). Writes
``benchmarks/results/pruning_tasks.{json,md}`` (``results/quick/`` with ``--quick``: one
task, 8 networks, 30 training steps).

    python benchmarks/bench_pruning_tasks.py [--quick] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch
from _results import add_out_argument, one_thread, results_folder
from bench_editor import accuracy_of, one_shot_pruners, over, side_by_side
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, MetanetEditor, make_population
from sklearn_metaedit.datasets import load_german_credit, make_preprocessor

SMALL = [(16, 16), (32, 32), (48, 48)]
#: Each task: its data set (``load``), the hidden widths its networks are drawn from, their
#: epochs, and how the tables name the architecture.
TASKS = {
    "digits": {"data": "digits", "hidden": [(128,)], "epochs": 30, "what": "64-128-10"},
    "digits, two layers": {
        "data": "digits",
        "hidden": SMALL,
        "epochs": 30,
        "what": "64-h-h-10, h in {16, 32, 48}",
    },
    "breast cancer": {
        "data": "breast cancer",
        "hidden": SMALL,
        "epochs": 60,
        "what": "30-h-h-2, h in {16, 32, 48}",
    },
    "German credit": {
        "data": "German credit",
        "hidden": SMALL,
        "epochs": 40,
        "what": "d-h-h-2, h in {16, 32, 48}",
    },
    "synthetic": {
        "data": "synthetic",
        "hidden": [(64, 64, 64)],
        "epochs": 5,
        "what": "30-64-64-64-2",
    },
    "synthetic, two layers": {
        "data": "synthetic",
        "hidden": SMALL,
        "epochs": 5,
        "what": "30-h-h-2, h in {16, 32, 48}",
    },
}
TARGETS = (0.9, 0.95)
CALIBRATION_ROWS = 1024
EDITOR = "MetanetEditor"
PRIOR = "editor untrained (max_steps=0)"
CALIBRATED = "MetanetEditor, given the calibration rows"


def load(data: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and test rows of the data set ``data`` (float32, standardised or
    preprocessed on the training rows alone) and labels."""
    if data == "synthetic":
        X, y = make_classification(
            20000,
            30,
            n_informative=12,
            n_redundant=6,
            flip_y=0.05,
            class_sep=0.8,
            random_state=0,
        )
        X = X.astype(np.float32)
        return X[:10000], y[:10000], X[10000:], y[10000:]
    if data == "German credit":
        bunch = load_german_credit()
        X, y = bunch.data, bunch.target.to_numpy()
        test_size, scaler = 0.3, make_preprocessor()
    else:
        X, y = (
            load_digits(return_X_y=True)
            if data == "digits"
            else load_breast_cancer(return_X_y=True)
        )
        test_size, scaler = (0.3 if data == "digits" else 0.4), StandardScaler()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=0, stratify=y
    )
    X_train = scaler.fit_transform(X_train).astype(np.float32)
    return X_train, np.asarray(y_train), scaler.transform(X_test).astype(np.float32), y_test


def networks(task: str, X, y, n: int) -> list:
    spec = TASKS[task]
    estimator = NeuralNetClassifier(
        MLP,
        module__n_features=X.shape[1],
        module__n_classes=len(np.unique(y)),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        batch_size=256,
        max_epochs=spec["epochs"],
        train_split=None,
        verbose=0,
    )
    return make_population(
        estimator,
        X,
        y,
        n_networks=n,
        param_distributions={"module__hidden_sizes": spec["hidden"]},
        random_state=0,
    )


def paired(ours: list[float], theirs: list[float]) -> dict:
    """Mean and standard error of ``ours - theirs`` over the networks, in points."""
    difference = 100 * (np.asarray(ours) - np.asarray(theirs))
    error = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return {"mean": float(difference.mean()), "standard_error": float(error)}


def one_target(task, X, y, X_test, y_test, train, held_out, target, editor_params, log):
    X_test = torch.as_tensor(X_test)
    calibration = torch.as_tensor(X[:CALIBRATION_ROWS])
    started = time.perf_counter()
    editor = MetanetEditor("sparsity", target=target, random_state=0, **editor_params)
    editor.fit(train, data=(X, y))
    fit_seconds = time.perf_counter() - started  # fit warns where training added nothing
    prior = MetanetEditor("sparsity", target=target, max_steps=0, random_state=0)
    prior.fit(train, data=(X, y))
    runs = {
        EDITOR: lambda: [net.module_ for net in editor.transform(held_out)],
        CALIBRATED: lambda: [
            net.module_ for net in editor.transform(held_out, calibration=calibration)
        ],
        PRIOR: lambda: [net.module_ for net in prior.transform(held_out)],
    }
    for name, prune in one_shot_pruners(calibration, target).items():
        runs[name] = over(held_out, prune)
    per_network = {
        name: [accuracy_of(module, X_test, y_test) for module in run()]
        for name, run in runs.items()
    }
    seconds = side_by_side(runs, len(held_out), rounds=3)
    one_shot = [m for m in per_network if m not in (EDITOR, CALIBRATED, PRIOR)]
    plain = [m for m in one_shot if "refinement" not in m]
    refined = [m for m in one_shot if "refinement" in m]
    best = max(plain, key=lambda m: np.mean(per_network[m]))
    best_refined = max(refined, key=lambda m: np.mean(per_network[m]))
    log(
        f"{task} {target}: editor {np.mean(per_network[EDITOR]):.4f}, {best} "
        f"{np.mean(per_network[best]):.4f}, {best_refined} "
        f"{np.mean(per_network[best_refined]):.4f}; fit {fit_seconds:.0f} s"
    )
    return {
        "accuracy": {m: float(np.mean(v)) for m, v in per_network.items()},
        "per_network": per_network,
        "seconds_per_network": seconds,
        "fit_seconds": fit_seconds,
        "training_gain": float(editor.training_gain_),
        "selected_step": editor.selected_step_,
        "best_one_shot": best,
        "editor_minus_best_one_shot": paired(per_network[EDITOR], per_network[best]),
        "best_refined": best_refined,
        "editor_minus_best_refined": paired(per_network[EDITOR], per_network[best_refined]),
        "calibrated_minus_best_refined": paired(
            per_network[CALIBRATED], per_network[best_refined]
        ),
    }


def run(quick: bool, log) -> dict:
    tasks = ["breast cancer"] if quick else list(TASKS)
    n_networks, n_held_out = (8, 4) if quick else (30, 12)
    editor_params = {"max_steps": 30} if quick else {}
    result = {
        "quick": quick,
        "n_networks": n_networks,
        "n_held_out": n_held_out,
        "calibration_rows": CALIBRATION_ROWS,
        "editor_params": editor_params,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "tasks": {},
    }
    for task in tasks:
        X, y, X_test, y_test = load(TASKS[task]["data"])
        started = time.perf_counter()
        nets = networks(task, X, y, n_networks)
        log(f"{task}: {n_networks} networks in {time.perf_counter() - started:.0f} s")
        train, held_out = nets[:-n_held_out], nets[-n_held_out:]
        original = [accuracy_of(net.module_, torch.as_tensor(X_test), y_test) for net in held_out]
        result["tasks"][task] = {
            "architecture": TASKS[task]["what"],
            "n_train_rows": len(X),
            "n_test_rows": len(X_test),
            "original": float(np.mean(original)),
            "targets": {
                str(target): one_target(
                    task, X, y, X_test, y_test, train, held_out, target, editor_params, log
                )
                for target in TARGETS
            },
        }
    return result


def _points(stats: dict) -> str:
    return f"{stats['mean']:+.2f} ± {stats['standard_error']:.2f}"


def _time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{1000 * seconds:.1f} ms"


def calibrated_against(block: dict) -> dict:
    """The editor given the peers' rows against the best pruner + the refinement (paired
    over the networks; computed from the per-network accuracies where a result predates
    the key)."""
    if "calibrated_minus_best_refined" in block:
        return block["calibrated_minus_best_refined"]
    networks = block["per_network"]
    return paired(networks[CALIBRATED], networks[block["best_refined"]])


def to_markdown(result: dict) -> str:
    lines = [
        "### The sparsity editor with its defaults on other tasks and widths",
        "",
        f"{result['n_held_out']} held-out networks a task; the editor's difference from "
        "the best one-shot pruner (Wanda, SparseGPT, OBC; uniform or magnitude layer "
        "rates) and from the best one followed by the refinement: mean ± standard error "
        "over the networks, in points. The peers read the task's first "
        f"{result['calibration_rows']:,} training rows; the editor reads none unless given "
        "them (last column: given the same rows).",
        "",
        "| task | sparsity | MetanetEditor | best one-shot pruner | editor − it "
        "| best pruner + refinement | editor − it | editor given the rows − it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in result["tasks"].items():
        for target, block in entry["targets"].items():
            accuracy = block["accuracy"]
            best, refined = block["best_one_shot"], block["best_refined"]
            lines.append(
                f"| {task} | {target} | {accuracy[EDITOR]:.4f} | {best} {accuracy[best]:.4f} "
                f"| {_points(block['editor_minus_best_one_shot'])} | {refined} "
                f"{accuracy[refined]:.4f} | {_points(block['editor_minus_best_refined'])} "
                f"| {_points(calibrated_against(block))} |"
            )
    for task, entry in result["tasks"].items():
        targets = list(entry["targets"])
        lines += [
            "",
            f"### {task}: {entry['architecture']} ({entry['n_train_rows']:,} training and "
            f"{entry['n_test_rows']:,} test rows; original networks "
            f"{entry['original']:.4f})",
            "",
            "| method | "
            + " | ".join(f"accuracy at {t}" for t in targets)
            + " | "
            + " | ".join(f"s / network at {t}" for t in targets)
            + " |",
            "|---|" + "---|" * (2 * len(targets)),
        ]
        blocks = [entry["targets"][t] for t in targets]
        for method in blocks[0]["accuracy"]:
            accuracy = " | ".join(f"{b['accuracy'][method]:.4f}" for b in blocks)
            seconds = " | ".join(_time(b["seconds_per_network"][method]) for b in blocks)
            lines.append(f"| {method} | {accuracy} | {seconds} |")
        fits = "; ".join(
            f"at {t}, {b['fit_seconds']:.0f} s, training added {b['training_gain']:+.4f} "
            f"to the validation score (step {b['selected_step']} kept)"
            for t, b in zip(targets, blocks, strict=True)
        )
        lines += ["", f"Editor fits: {fits}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    one_thread()
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:8.1f}s] {message}", flush=True)

    result = run(args.quick, log)
    result["seconds"] = time.perf_counter() - started
    folder = results_folder(args)
    (folder / "pruning_tasks.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "pruning_tasks.md").write_text(to_markdown(result))
    log(f"wrote {folder / 'pruning_tasks.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
