from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.demo import (
    TabularTask,
    compare_fairness_layer,
    editor_summary,
    minimisation_summary,
    online_gap_trajectory,
    run_editor_sweep,
    run_minimisation_comparison,
    run_online_demo,
    write_report,
)
from sklearn_metaedit.demo import _cli as cli
from sklearn_metaedit.demo._report import FLOAT_FORMAT, pareto_front

EPSILON = 0.05
FORBIDDEN = ["x2", "x5"]


class _Page(HTMLParser):
    """The images and the tables (by id: rows of cell texts) of an HTML page."""

    def __init__(self):
        super().__init__()
        self.images, self.tables = [], {}
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def _cells(frame):
    """The header and the rows of a DataFrame as the report writes them (a dash: no value)."""
    rows = [
        [
            "–"
            if isinstance(v, float) and np.isnan(v)
            else FLOAT_FORMAT(v)
            if isinstance(v, float)
            else str(v)
            for v in row
        ]
        for row in frame.itertuples(index=False)
    ]
    return [list(map(str, frame.columns)), *rows]


@pytest.fixture(scope="module")
def demo_tables():
    X, y, s = make_biased_classification(1200, n_features=8, bias=2.0, random_state=0)
    task = TabularTask(
        "synthetic/group",
        X[:800],
        y[:800],
        s[:800].astype(str),
        X[800:],
        y[800:],
        s[800:].astype(str),
        [f"x{i}" for i in range(8)],
    )
    stream = (task.X_train, task.y_train, task.s_train, task.X_test, task.y_test, task.s_test)
    editor_data = (task.X_train, task.y_train, task.X_test, task.y_test)
    population = {"n_networks": 4, "n_held_out": 2, "max_steps": 5, "verbose": 0}
    return {
        "fairness": compare_fairness_layer(task, epsilon=EPSILON, steps=60),
        "online": run_online_demo(*stream, epsilon=EPSILON),
        "trajectory": online_gap_trajectory(*stream, epsilon=EPSILON, n_points=30),
        "sweep": run_editor_sweep(*editor_data, sparsities=(0.5, 0.9), **population),
        "minimisation": run_minimisation_comparison(
            *editor_data,
            forbidden_features=FORBIDDEN,
            feature_names=task.feature_names,
            **population,
        ),
    }


@pytest.fixture(scope="module")
def report(demo_tables, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    index = write_report(
        folder,
        epsilon=EPSILON,
        details={"seed": 0},
        minimisation_note="Forbidden input columns: x2, x5.",
        **demo_tables,
    )
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    return folder, index, page


def test_report_page_shows_every_png_it_writes_and_each_is_a_valid_image(report):
    folder, index, page = report
    assert index == folder / "index.html"
    written = sorted(p.name for p in folder.glob("*.png"))
    assert written == [
        "accuracy_vs_sparsity.png",
        "edit_time.png",
        "fairness_pareto.png",
        "minimisation.png",
        "online_gap.png",
    ]
    assert sorted(page.images) == written
    for name in written:
        with Image.open(folder / name) as image:
            assert image.format == "PNG"
            image.verify()
        with Image.open(folder / name) as image:
            width, height = image.size
            # a figure, not an empty canvas: more than one colour is drawn
            assert width > 300 and height > 200
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10


def test_report_page_is_self_contained(report):
    _, index, page = report
    text = index.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "http://" not in text and "https://" not in text
    assert all("/" not in src for src in page.images)


def test_report_tables_hold_the_numbers_of_the_demo_frames(report, demo_tables):
    _, _, page = report
    fairness = demo_tables["fairness"].drop(columns=["task", "epsilon"])
    assert page.tables["fairness"] == _cells(fairness)
    assert page.tables["online"] == _cells(demo_tables["online"].reset_index())
    assert page.tables["editor_sweep"] == _cells(demo_tables["sweep"])
    assert page.tables["editor_summary"] == _cells(editor_summary(demo_tables["sweep"]))
    minimisation = demo_tables["minimisation"]
    assert page.tables["minimisation"] == _cells(minimisation)
    assert page.tables["minimisation_summary"] == _cells(minimisation_summary(minimisation))
    # the fairness table's accuracies are those of the frame, to the digits shown
    shown = [float(row[1]) for row in page.tables["fairness"][1:]]
    np.testing.assert_allclose(shown, fairness["accuracy"], rtol=1e-3)


def test_editor_summary_averages_the_held_out_networks(demo_tables):
    sweep = demo_tables["sweep"]
    summary = editor_summary(sweep).set_index(["method", "target"])
    for (method, target), part in sweep.groupby(["method", "target"]):
        assert summary.loc[(method, target), "accuracy"] == pytest.approx(part["accuracy"].mean())
        assert summary.loc[(method, target), "accuracy_min"] == part["accuracy"].min()
        assert summary.loc[(method, target), "accuracy_max"] == part["accuracy"].max()
    assert len(summary) == 1 + 3 * 2  # the original, and three methods at two sparsities


def test_minimisation_section_names_the_forbidden_columns_and_reads_zero_for_every_edit(report):
    _, index, page = report
    text = index.read_text(encoding="utf-8")
    assert "Editing: data minimisation" in text
    # named once in the text, by the note the demo passes; the section gives their number
    assert "columns (2):" in text and "Forbidden input columns: x2, x5." in text
    assert text.count("x2, x5") == 1
    header, *rows = page.tables["minimisation_summary"]
    used = {row[0]: int(row[header.index("forbidden_columns_used")]) for row in rows}
    assert used == {
        "original": 2,
        "zero the columns": 0,
        "zero the columns + fine-tuning": 0,
        "retrain without the columns": 0,
        "MetanetEditor": 0,
    }
    # the original is where the methods start: it shows no time
    seconds = {row[0]: row[header.index("seconds")] for row in rows}
    assert seconds["original"] == "–"
    assert all(float(v) > 0 for m, v in seconds.items() if m != "original")


def test_minimisation_edits_the_held_out_networks_of_the_sparsity_sweep(demo_tables):
    sweep, minimisation = demo_tables["sweep"], demo_tables["minimisation"]
    # the same rows and seed build the same population: its held-out networks, unedited,
    # score exactly alike in both comparisons
    original = sweep[sweep["method"] == "original"].set_index("network")["accuracy"]
    same = minimisation[minimisation["method"] == "original"].set_index("network")["accuracy"]
    assert same.to_dict() == original.to_dict()


def test_minimisation_summary_takes_the_mean_the_worst_and_the_most_columns_read(demo_tables):
    table = demo_tables["minimisation"]
    summary = minimisation_summary(table).set_index("method")
    assert list(summary.index) == list(dict.fromkeys(table["method"]))
    for method, part in table.groupby("method"):
        assert summary.loc[method, "accuracy"] == pytest.approx(part["accuracy"].mean())
        assert summary.loc[method, "accuracy_min"] == part["accuracy"].min()
        if method == "original":
            # what the methods start from: no time to make it
            assert np.isnan(summary.loc[method, "seconds"])
        else:
            assert summary.loc[method, "seconds"] == pytest.approx(part["seconds"].mean())
        assert (
            summary.loc[method, "forbidden_columns_used"] == part["forbidden_columns_used"].max()
        )


def test_demo_forbids_the_columns_of_the_protected_attributes_among_the_inputs():
    names = ["age", "agent", "sex_Male", "sex_Female", "marital-status_Divorced", "hours"]
    columns, absent = cli._protected_columns(names, ("sex", "race", "age"))
    # numeric columns by name, one-hot columns by prefix; "agent" is not "age"
    assert columns == ["age", "sex_Male", "sex_Female"]
    assert absent == ["race"]
    german = ["duration", "foreign_worker_A201", "foreign_worker_A202", "job_A171"]
    columns, absent = cli._protected_columns(german, cli.PROTECTED["german"])
    assert columns == ["foreign_worker_A201", "foreign_worker_A202"]
    assert absent == ["personal_status_sex", "age"]


def _dominated(i, accuracy, gap):
    return any(
        accuracy[j] >= accuracy[i]
        and gap[j] <= gap[i]
        and (accuracy[j], gap[j]) != (accuracy[i], gap[i])
        for j in range(len(accuracy))
    )


def test_pareto_front_matches_brute_force_dominance():
    rng = np.random.default_rng(0)
    for _ in range(50):
        # one decimal: ties and duplicate points occur
        accuracy, gap = rng.random(9).round(1), rng.random(9).round(1)
        front = pareto_front(accuracy, gap)
        expected = {(gap[i], accuracy[i]) for i in range(9) if not _dominated(i, accuracy, gap)}
        # one index per non-dominated point, none dominated, in increasing gap
        assert sorted((gap[i], accuracy[i]) for i in front) == sorted(expected)
        assert len(front) == len(expected)
        assert (np.diff(gap[front]) > 0).all()


def test_demo_options_quick_is_an_alias_of_size_quick(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "demo", lambda args: seen.append(args) or 0)
    assert cli.main(["demo", "--quick"]) == 0
    assert cli.main(["demo", "--size", "quick", "--out", "elsewhere", "--dataset", "german"]) == 0
    assert cli.main(["demo"]) == 0
    quick, other, default = seen
    assert quick.size == other.size == "quick"
    assert default.size == "full" and str(default.out) == "demo_report"
    assert str(other.out) == "elsewhere" and other.dataset == "german"
