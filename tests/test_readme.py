"""Every Python example of the README runs as written, and shows what its text says.

Each ```python block runs in a fresh interpreter, as a reader would paste it; then a few
lines appended to it check what the example claims, on the names it defined.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.S | re.M)

# what each estimator's example must show, checked on the example's own variables
CLAIMS = {
    "FairnessLayerClassifier": """
assert gap <= 0.05, gap
assert (y_pred == test.target).mean() > 0.80
""",
    "OnlineFairPredictor": """
assert report.n_decisions == 5000
assert report.pooled_gap <= report.bound, (report.pooled_gap, report.bound)
""",
    "MetanetEditor": """
import numpy as np
assert len(pruned) == 2
for net in pruned:
    weights = [m.weight for m in net.module_ if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - 0.9) < 0.01, zeros
assert np.allclose(report["sparsity_after"], 0.9, atol=0.01)
assert (report["accuracy_before"] - report["accuracy_after"] < 0.02).all(), report
""",
}


def _estimator(block):
    (name,) = [name for name in CLAIMS if re.search(rf"\b{name}\(", block)]
    return name


def test_the_readme_has_one_example_per_estimator():
    assert sorted(_estimator(block) for block in BLOCKS) == sorted(CLAIMS)


@pytest.mark.parametrize("block", BLOCKS, ids=_estimator)
def test_readme_example_runs_and_shows_what_it_claims(block, tmp_path):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", block + CLAIMS[_estimator(block)]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "the example printed nothing"
    print(f"{_estimator(block)}: {seconds:.1f} s")
