"""The command line: every option is checked before any work, and the quick demo is quick.

A bad option must end ``python -m sklearn_metaedit demo`` at once, with argparse's usage
message and exit status 2, before a data set is loaded or a network trained.
"""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_metaedit import FairnessLayerClassifier, OnlineFairPredictor
from sklearn_metaedit.datasets import load_adult, load_german_credit
from sklearn_metaedit.demo import TabularTask
from sklearn_metaedit.demo import _cli as cli

# what a user may pass: each data set's group attributes
VALID_PAIRS = [("adult", "sex"), ("adult", "race"), ("german", "sex"), ("german", "age_group")]

# (options after ``demo``, what stderr must say); {file} is an existing file
BAD_OPTIONS = {
    "sensitive feature of another data set": (
        ["--dataset", "german", "--sensitive", "race"],
        "argument --sensitive: 'race' is not a sensitive feature of the german data set; "
        "choose from sex, age_group (adult has sex, race)",
    ),
    "sensitive feature of the default data set": (
        ["--sensitive", "age_group"],
        "'age_group' is not a sensitive feature of the adult data set; choose from sex, race",
    ),
    "no such sensitive feature": (
        ["--dataset", "german", "--sensitive", "gender"],
        "'gender' is not a sensitive feature of the german data set",
    ),
    "negative epsilon": (["--epsilon", "-0.1"], "argument --epsilon: the parity gap allowed"),
    "epsilon of 1": (["--epsilon", "1"], "must be at least 0 (exact parity) and below 1, got 1"),
    "epsilon above 1": (["--epsilon", "1.5"], "below 1, got 1.5"),
    "nan epsilon": (["--epsilon", "nan"], "below 1, got nan"),
    "infinite epsilon": (["--epsilon", "inf"], "below 1, got inf"),
    "epsilon not a number": (["--epsilon", "tight"], "argument --epsilon: must be a number"),
    "unknown data set": (["--dataset", "compas"], "argument --dataset: invalid choice: 'compas'"),
    "unknown size": (["--size", "medium"], "argument --size: invalid choice: 'medium'"),
    "quick and full at once": (
        ["--quick", "--size", "full"],
        "argument --quick: not allowed with --size full",
    ),
    "negative seed": (["--seed", "-1"], "argument --seed: the seed must be between 0 and"),
    "seed past numpy's range": (["--seed", str(2**32)], f"got {2**32}"),
    "fractional seed": (["--seed", "0.5"], "argument --seed: must be a whole number"),
    "no threads": (["--threads", "0"], "argument --threads: the number of threads"),
    "more threads than CPUs": (["--threads", "100000"], "got 100000"),
    "report folder is a file": (["--out", "{file}"], "is a file; give a folder for the report"),
    "report folder below a file": (["--out", "{file}/report"], "cannot make the folder"),
    "unknown option": (["--epochs", "3"], "unrecognized arguments: --epochs 3"),
}


def _demo_options(options, tmp_path):
    file = tmp_path / "a_file"
    file.write_text("")
    return [option.replace("{file}", str(file)) for option in options]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS.values(), ids=BAD_OPTIONS)
def test_bad_option_ends_the_command_at_once_with_a_usage_error(options, message, tmp_path):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_metaedit", "demo", *_demo_options(options, tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("usage: python -m sklearn_metaedit demo")
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""
    # the measured time is an interpreter's start and argparse: a tenth of a second
    assert seconds < 5, seconds
    # no report folder was made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_report_folder_on_a_file_system_that_refuses_folders_is_refused():
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_metaedit", "demo", "--out", "/proc/demo_report"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "argument --out: cannot write the report into '/proc/demo_report'" in result.stderr


def test_no_command_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_metaedit"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "the following arguments are required: command" in result.stderr


def test_bad_options_are_refused_before_anything_heavy_is_imported(tmp_path):
    # in one fresh interpreter: the refusal comes before torch (and with it any data set
    # or network) is loaded
    cases = [_demo_options(options, tmp_path) for options, _ in BAD_OPTIONS.values()]
    script = textwrap.dedent(
        f"""
        import sys
        from sklearn_metaedit.demo import _cli
        accepted = []
        _cli.demo = lambda args: accepted.append(args) or 0
        for options in {cases!r}:
            try:
                _cli.main(["demo", *options])
            except SystemExit as exc:
                assert exc.code == 2, (options, exc.code)
        assert not accepted, accepted
        heavy = ("torch", "sklearn", "pandas", "fairlearn", "matplotlib")
        print("loaded:", [m for m in heavy if m in sys.modules])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "loaded: []"


@pytest.mark.parametrize(("dataset", "sensitive"), VALID_PAIRS)
def test_each_data_sets_sensitive_feature_is_accepted(dataset, sensitive, tmp_path):
    args = cli.parse_args(
        ["demo", "--dataset", dataset, "--sensitive", sensitive, "--out", str(tmp_path)]
    )
    assert (args.dataset, args.sensitive) == (dataset, sensitive)
    assert args.func is cli.demo


@pytest.mark.parametrize("dataset", ["adult", "german"])
def test_sensitive_feature_defaults_to_sex(dataset):
    assert cli.parse_args(["demo", "--dataset", dataset]).sensitive == "sex"


def test_sensitive_choices_are_the_group_columns_each_loader_returns():
    german = load_german_credit()
    adult = load_adult(split="test")
    assert {
        "adult": adult.sensitive.columns.tolist(),
        "german": german.sensitive.columns.tolist(),
    } == {name: list(groups) for name, groups in cli.SENSITIVE.items()}
    assert sorted(VALID_PAIRS) == sorted(
        (name, group) for name, groups in cli.SENSITIVE.items() for group in groups
    )


def _estimator_accepts(cls, epsilon):
    try:
        cls(LogisticRegression(), epsilon=epsilon)._validate_params()
    except InvalidParameterError:
        return False
    return True


def _cli_accepts(epsilon, tmp_path):
    try:
        cli.parse_args(["demo", f"--epsilon={epsilon!r}", "--out", str(tmp_path)])
    except SystemExit as exc:
        assert exc.code == 2
        return False
    return True


@pytest.mark.parametrize(
    "epsilon", [0.0, 1e-12, 0.05, 0.5, 1 - 1e-12, 1.0, 1.5, -1e-12, -0.1, np.nan, np.inf]
)
def test_epsilon_is_accepted_exactly_where_both_fairness_estimators_accept_it(epsilon, tmp_path):
    # the demo passes --epsilon to FairnessLayerClassifier and OnlineFairPredictor: a
    # value either refuses must be refused before the run, and 0 means what it means there
    accepted = [
        _estimator_accepts(cls, epsilon) for cls in (FairnessLayerClassifier, OnlineFairPredictor)
    ]
    assert _cli_accepts(epsilon, tmp_path) == all(accepted)


def test_quick_training_sample_is_stratified_by_group_and_label_and_keeps_the_test_split():
    rng = np.random.default_rng(0)
    n = 5000
    groups = rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.7, 0.25, 0.05])
    y = (rng.random(n) < np.where(groups == "a", 0.4, 0.1)).astype(np.int64)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    task = TabularTask("toy/g", X, y, groups, X[:50], y[:50], groups[:50], ["x0", "x1", "x2"])
    sample = cli._training_sample(task, 1000, random_state=0)
    assert len(sample.y_train) == 1000
    # the rows are rows of the task, each with its own label and group
    rows = [int(np.flatnonzero((X == row).all(axis=1))[0]) for row in sample.X_train]
    assert len(set(rows)) == 1000
    assert (y[rows] == sample.y_train).all() and (groups[rows] == sample.s_train).all()
    # every (group, label) stratum keeps its share, up to one row of rounding
    for group in "abc":
        for label in (0, 1):
            share = np.mean((groups == group) & (y == label))
            count = np.sum((sample.s_train == group) & (sample.y_train == label))
            assert abs(count - 1000 * share) <= 1, (group, label)
    assert sample.X_test is task.X_test and sample.s_test is task.s_test
    # a table no larger than the sample is left whole
    assert cli._training_sample(task, n, random_state=0) is task


def test_demo_holds_every_blas_and_openmp_pool_to_threads(tmp_path):
    # a fresh interpreter, so that the pools scipy and scikit-learn load are not loaded
    # before the demo starts, as when it is run from the command line
    script = textwrap.dedent(
        f"""
        from threadpoolctl import threadpool_info
        from sklearn_metaedit.demo import _cli
        seen = []
        _cli._run = lambda args: seen.extend(threadpool_info()) or 0
        assert _cli.main(["demo", "--quick", "--threads", "1", "--out", {str(tmp_path)!r}]) == 0
        apis = sorted({{pool["internal_api"] for pool in seen}})
        print(apis, sorted({{pool["num_threads"] for pool in seen}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    apis, threads = result.stdout.strip().rsplit(" ", 1)
    assert "openblas" in apis or "mkl" in apis, apis
    assert threads == "[1]"


@pytest.mark.slow
def test_quick_demo_at_epsilon_zero_says_how_long_it_takes_and_finishes(tmp_path):
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sklearn_metaedit",
            "demo",
            "--quick",
            "--epsilon",
            "0",
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    first = result.stderr.splitlines()[0]
    assert first.startswith("The quick demo on adult") and "takes about" in first, first
    assert (tmp_path / "report" / "index.html").exists()
    # about half a minute of one core; twice that leaves room for a busy machine
    assert seconds < 120, seconds
