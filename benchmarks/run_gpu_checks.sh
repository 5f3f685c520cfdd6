#!/usr/bin/env bash
# Everything that needs a GPU, in one go (well under 10 minutes on one CUDA device):
#   1. the tests marked `cuda` (projection forward/backward against the CPU, the fairness
#      layer, the online predictor, make_population and the editor on device="cuda");
#   2. the GPU benchmark rows (benchmarks/bench_gpu.py), written to benchmarks/results/gpu.{json,md}.
# Run from the repository root, in the project's environment:
#   bash benchmarks/run_gpu_checks.sh            # or PYTHON=.venv/bin/python bash ...
# Exit status: 2 when torch finds no CUDA device, else that of the first step that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}"

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "run_gpu_checks.sh: torch finds no CUDA device; nothing to check here." >&2
    exit 2
fi
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"

start=$(date +%s)
echo "== tests marked cuda"
# on a GPU machine none of these may be skipped: -rs lists any skip
"$PYTHON" -m pytest -m cuda tests/test_cuda.py -q -rs -p no:cacheprovider
echo "== GPU benchmark rows"
"$PYTHON" benchmarks/bench_gpu.py "$@"
echo "== done in $(( $(date +%s) - start )) s"
