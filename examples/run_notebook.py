"""Rerun a notebook in place, in a kernel of this very interpreter.

    python examples/run_notebook.py examples/fairlearn_comparison.ipynb

The kernel is this Python (a kernel spec written to a temporary folder: nothing is
installed anywhere), started in the notebook's folder, with the inline matplotlib
backend; every cell runs in order and the outputs are written back into the file.
``make notebook`` runs it on the fairlearn comparison.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient


def kernel_manager(folder: Path) -> KernelManager:
    """A kernel manager whose ``python3`` kernel runs this interpreter."""
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def execute(path: Path, timeout: int = 1200) -> nbformat.NotebookNode:
    """The notebook at ``path`` with every cell run, in a kernel started in its folder."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        client = NotebookClient(
            notebook,
            km=kernel_manager(Path(folder)),
            kernel_name="python3",
            timeout=timeout,
            resources={"metadata": {"path": str(path.resolve().parent)}},
        )
        client.execute()
    return notebook


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(args[0])
    start = time.perf_counter()
    notebook = execute(path)
    nbformat.write(notebook, path)
    print(f"{path}: every cell run in {time.perf_counter() - start:.0f} s, outputs written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
