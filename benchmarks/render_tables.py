"""Render the benchmark tables of the README and the docs from ``benchmarks/results/``.

No figure is copied by hand: a document marks where a table goes, and this script
writes the table there from the files the benchmarks wrote.

Markdown (README.md)::

    <!-- table: editor.md#Sparsity 90% -->
    ... (written by this script)
    <!-- end table -->

reStructuredText (docs/*.rst)::

    .. table: editor.md#Sparsity 90%

    ... (written by this script)

    .. end table

``name.md#Heading`` is the first table after the first heading of
``benchmarks/results/name.md`` that starts with ``Heading``; ``name.md#3`` is the
file's third table; ``summary`` is the README's summary of every benchmark, built from
the JSON files.

    python benchmarks/render_tables.py          # rewrite the marked tables
    python benchmarks/render_tables.py --check  # exit 1 and name the stale documents
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
#: The one-shot pruners from calibration rows that the editor benchmark sets beside it.
_ONE_SHOT = ("Wanda", "SparseGPT", "OBC")

_MARKDOWN = re.compile(
    r"(?P<open><!-- table: (?P<key>[^>]+?) -->\n)(?P<body>.*?)(?P<close><!-- end table -->)",
    re.S,
)
_RST = re.compile(
    r"(?P<open>^\.\. table: (?P<key>.+?)\n)(?P<body>.*?)(?P<close>^\.\. end table$)",
    re.S | re.M,
)


# ---------------------------------------------------------------------------- tables


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row; ``\\|`` is a bar inside a cell."""
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def tables(markdown: str) -> list[tuple[str | None, list[list[str]]]]:
    """Every table of a markdown text, as (the heading above it, its rows of cells);
    the separator row is dropped."""
    out, heading, current = [], None, None
    for line in markdown.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                out.append((heading, current))
            if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                current.append(_cells(line))
            continue
        current = None
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return out


def find_table(key: str) -> list[list[str]]:
    """The rows of the table ``name.md#Heading`` or ``name.md#n``."""
    name, _, which = key.partition("#")
    path = RESULTS / name
    if not path.is_file():
        raise ValueError(f"table {key!r}: no file {path.relative_to(ROOT)}.")
    found = tables(path.read_text())
    if which.isdigit():
        if not 1 <= int(which) <= len(found):
            raise ValueError(f"table {key!r}: {name} has {len(found)} tables.")
        return found[int(which) - 1][1]
    for heading, rows in found:
        if heading is not None and heading.startswith(which):
            return rows
    headings = [h for h, _ in found if h]
    raise ValueError(f"table {key!r}: no heading starts with {which!r}; headings: {headings}.")


def to_markdown(rows: list[list[str]]) -> str:
    escape = [[c.replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(escape[0]) + " |", "|" + "---|" * len(escape[0])]
    lines += ["| " + " | ".join(row) + " |" for row in escape[1:]]
    return "\n".join(lines) + "\n"


def _rst_text(cell: str) -> str:
    """A cell as reStructuredText text: markup characters escaped."""
    return re.sub(r"([\\*`|_])", r"\\\1", cell)


def to_rst(rows: list[list[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        for i, cell in enumerate(row):
            lead = "   * - " if i == 0 else "     - "
            text = _rst_text(cell)
            lines.append(lead + text if text else lead.rstrip())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- summary


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def summary_rows() -> list[list[str]]:
    """One row per claim: what this package measured, and its strongest peers in the
    same run."""
    rows = [["claim", "benchmark", "sklearn_metaedit", "peers, same run"]]

    layer = {
        r["method"]: r
        for r in _load("fairness_layer")["summary"]
        if r["task"] == "adult/sex" and r["epsilon"] == 0.05
    }

    def fair(method: str) -> str:
        r = layer[method]
        within = "≤ ε" if r["within_epsilon_every_seed"] else "> ε"
        return f"{r['accuracy_mean']:.4f} (gap {r['dp_gap_max']:.4f}, {within})"

    rows.append(
        [
            "exact parity on every prediction batch: Adult, sex, ε = 0.05, accuracy "
            "(largest gap over seeds)",
            "`bench_fairness_layer.py`",
            f"FairnessLayerClassifier {fair('FairnessLayerClassifier')}",
            f"ThresholdOptimizer {fair('ThresholdOptimizer (prefit MLP)')}; "
            f"ExponentiatedGradient {fair('ExponentiatedGradient (LogReg)')}",
        ]
    )

    online = _load("online")
    stream = {
        r["method"]: r
        for r in online["rows"]
        if r["stream"] == "drifting" and r["epsilon"] == 0.05 and r["batch_size"] == 1
    }

    def pooled(method: str) -> str:
        r = stream[method]
        return f"gap {r['pooled_gap']:.4f}, accuracy {r['accuracy']:.4f}"

    rows.append(
        [
            "pooled parity over a drifting stream, one decision at a time: Adult test "
            "split, ε = 0.05",
            "`bench_online.py`",
            f"OnlineFairPredictor {pooled('OnlineFairPredictor')}",
            f"within-batch primal-dual {pooled('within-batch primal-dual')}; "
            f"ThresholdOptimizer (tol=0.05, offline) {pooled('ThresholdOptimizer (tol=0.05)')}",
        ]
    )

    speed = _load("projection_speed")
    largest = max(speed["cvxpylayers_vs_project_parity"], key=lambda r: r["n"])
    sort = speed["project_parity_vs_sort"][0]
    rows.append(
        [
            "exact projection, forward + backward",
            "`bench_projection_speed.py`",
            f"{largest['project_parity_ms']:.1f} ms at n = {largest['n']:,}; "
            f"{sort['forward_backward_over_sort']:.2f}x one torch.sort at "
            f"n = {sort['n']:,}",
            f"cvxpylayers {largest['cvxpylayers_ms']:.1f} ms at n = {largest['n']:,}",
        ]
    )

    editor = _load("editor")

    def acc(stats: dict) -> str:
        if stats["n"] > 1:
            return f"{stats['mean']:.4f} ± {stats['std']:.4f}"
        return f"{stats['mean']:.4f}"

    def timed(block: dict, method: str) -> str:
        seconds = block["seconds_per_network"].get(method)
        text = acc(block["accuracy"][method])
        if seconds is None:
            return text
        return f"{text}, {seconds:.1f} s" if seconds >= 10 else f"{text}, {1000 * seconds:.1f} ms"

    def pruning_peers(block: dict) -> str:
        """Fine-tuning, and the most accurate one-shot pruner from calibration rows."""
        peers = [f"magnitude + 3 epochs {timed(block, 'magnitude + 3 epochs')}"]
        one_shot = [m for m in block["accuracy"] if m.split(" ")[0] in _ONE_SHOT]
        if one_shot:
            best = max(one_shot, key=lambda m: block["accuracy"][m]["mean"])
            peers.append(f"{best} {timed(block, best)}")
        return "; ".join(peers)

    def ours(block: dict) -> list[str]:
        """The editor's rows: as fitted, and given the peers' rows at edit time."""
        return [m for m in block["accuracy"] if m.startswith("MetanetEditor")]

    def loses(block: dict) -> str:
        best = max(block["accuracy"][m]["mean"] for m in ours(block))
        others = [
            v["mean"]
            for m, v in block["accuracy"].items()
            if m != "original" and m not in ours(block) and not m.startswith("editor untrained")
        ]
        return " (the editor loses here)" if best < max(others) else ""

    for key, what in (
        ("sparsity", "held-out Adult MLPs"),
        ("sparsity_95", "held-out Adult MLPs"),
        ("wide", "3 x 256 networks"),
        ("wide_95", "3 x 256 networks"),
    ):
        if key not in editor:
            continue
        block = editor[key]
        rows.append(
            [
                f"pruning to {block['target']:.0%} in one pass, {what}: accuracy, time per "
                f"network{loses(block)}",
                "`bench_editor.py`",
                "; ".join(f"{m} {timed(block, m)}" for m in ours(block)),
                pruning_peers(block),
            ]
        )
    if (RESULTS / "pruning_tasks.json").exists():
        rows.append(pruning_tasks_row(_load("pruning_tasks")))
    groups, budget = editor["minimisation"]["forbidden_groups"], editor["minimisation"]["budget"]
    rows.append(
        [
            f"dropping {len(groups['groups'])} protected groups of inputs "
            f"({groups['n_columns']} columns)",
            "`bench_editor.py`",
            f"MetanetEditor {timed(groups, 'MetanetEditor')}",
            f"retraining without them {timed(groups, 'retrain without')}",
        ]
    )
    rows.append(
        [
            f"keeping a budget of {budget['k']} of {budget['n_columns']} columns",
            "`bench_editor.py`",
            f"MetanetEditor {timed(budget, 'MetanetEditor')}",
            "retraining on the editor's columns " + timed(budget, "retrain on the editor's k"),
        ]
    )
    parity = {r["method"]: r for r in editor["parity"]["rows"]}
    target = editor["parity"]["target"]
    calibrated = [m for m in parity if "calibrated" in m]
    ours = (
        calibrated[0] if calibrated else next(m for m in parity if m.startswith("MetanetEditor"))
    )

    def within(method):
        return f"{acc(parity[method]['accuracy'])}, {parity[method]['within']['mean']:.0%}"

    # the peers that read sex at prediction, where the results hold them
    peers = [
        (label, method)
        for label, method in (
            ("ThresholdOptimizer (tol = target)", f"ThresholdOptimizer (prefit, tol={target})"),
            (
                "FairnessLayerClassifier retrained",
                f"FairnessLayerClassifier (epsilon={target}, retrained)",
            ),
            ("ThresholdOptimizer (exact)", "ThresholdOptimizer (prefit)"),
        )
        if method in parity
    ]
    rows.append(
        [
            f"parity gap ≤ {target} (sex) by editing, group-blind"
            + (f" ({ours.split(', ', 1)[1]})" if calibrated else "")
            + ": accuracy, share of networks within",
            "`bench_editor.py`",
            f"MetanetEditor {within(ours)}",
            "; ".join(f"{label} (reads sex) {within(method)}" for label, method in peers[:2]),
        ]
    )
    joint = editor.get("joint", {}).get("combinations", {}).get("S+M+P")
    if joint is not None:
        rows.append(joint_summary_row(editor["joint"], joint))
    population = editor["population"]
    rows.append(
        [
            f"training a population of {population['n_networks']} networks",
            "`bench_editor.py`",
            f"make_population {population['make_population_s']:.1f} s",
            f"one skorch fit after another {population['sequential_skorch_s']:.1f} s",
        ]
    )
    return rows


def pruning_tasks_row(result: dict) -> list[str]:
    """The default sparsity editor on the tasks of ``bench_pruning_tasks.py``: on how many
    task-and-target pairs it is at least as accurate as the best one-shot pruner, and as
    the best one followed by the refinement, and its mean paired difference from each."""
    blocks = [b for entry in result["tasks"].values() for b in entry["targets"].values()]

    def against(key: str) -> str:
        differences = [b[key]["mean"] for b in blocks if key in b]
        wins = sum(d >= 0 for d in differences)
        mean = sum(differences) / len(differences)
        return f"≥ it on {wins} of {len(differences)}, mean difference {mean:+.2f} points"

    targets = sorted({t for entry in result["tasks"].values() for t in entry["targets"]})
    return [
        f"pruning to {' and '.join(targets)} with the defaults on {len(result['tasks'])} "
        f"other tasks and architectures ({'; '.join(result['tasks'])}), "
        f"{result['n_held_out']} held-out networks each: "
        "accuracy against the best peer of each task and target",
        "`bench_pruning_tasks.py`",
        "MetanetEditor against the best one-shot pruner: " + against("editor_minus_best_one_shot"),
        "MetanetEditor against the best one-shot pruner + the editor's refinement: "
        + against("editor_minus_best_refined")
        + (
            "; given the pruners' rows, " + against("calibrated_minus_best_refined")
            if any("calibrated_minus_best_refined" in b for b in blocks)
            else ""
        ),
    ]


def joint_summary_row(section: dict, block: dict) -> list[str]:
    """The editor for sparsity, forbidden groups and parity at once, beside the best
    Pipeline of single editors, the best classical sequence and retraining."""
    rows = {r["method"]: r for r in block["rows"]}

    def stated(method: str) -> str:
        r = rows[method]
        seconds = r["seconds_per_network"]
        time = f"{seconds:.1f} s" if seconds >= 10 else f"{1000 * seconds:.1f} ms"
        sex = " (reads sex)" if r["needs_sensitive_at_predict"] else ""
        return f"{r['accuracy']:.4f}, {r['meets_all']:.0%} meet all, {time}{sex}"

    def best(prefix: str) -> str | None:
        found = [m for m in rows if m.startswith(prefix)]
        return max(found, key=lambda m: rows[m]["accuracy"]) if found else None

    ours = best("MetanetEditor")
    peers = [
        (label, method)
        for label, method in (
            ("best Pipeline of editors", best("Pipeline")),
            ("best classical sequence", best("OBS column removal")),
            ("retraining", best("FairnessLayerClassifier")),
        )
        if method is not None
    ]
    # a more accurate peer beats the editor where it meets the requirements as often
    better = [m for _, m in peers if rows[m]["accuracy"] > rows[ours]["accuracy"]]
    if any(rows[m]["meets_all"] >= rows[ours]["meets_all"] for m in better):
        note = " (the editor loses here)"
    else:
        note = " (the more accurate peers meet all three on fewer networks)" if better else ""
    return [
        f"sparsity {section['sparsity']}, {len(section['groups'])} groups of inputs dropped "
        f"and parity gap ≤ {section['dp_target']} ({section['sensitive_feature']}) at once: "
        "accuracy, share of networks meeting all three, time per network" + note,
        "`bench_editor.py`",
        f"MetanetEditor {stated(ours)}",
        "; ".join(f"{label} {stated(method)}" for label, method in peers),
    ]


def render(key: str) -> list[list[str]]:
    return summary_rows() if key == "summary" else find_table(key)


# ---------------------------------------------------------------------------- documents


def rendered(text: str, markdown: bool) -> str:
    """``text`` with every marked table written from the results."""
    if markdown:
        return _MARKDOWN.sub(
            lambda m: m["open"] + to_markdown(render(m["key"])) + m["close"], text
        )
    return _RST.sub(
        lambda m: m["open"] + "\n" + to_rst(render(m["key"])) + "\n" + m["close"], text
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a table is stale"
    )
    args = parser.parse_args(argv)
    stale = []
    for path in DOCUMENTS:
        text = path.read_text()
        new = rendered(text, markdown=path.suffix == ".md")
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(
            f"stale benchmark tables in {', '.join(map(str, stale))}: run "
            "`python benchmarks/render_tables.py`",
            file=sys.stderr,
        )
        return 1
    for path in stale:
        print(f"rewrote the tables of {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
