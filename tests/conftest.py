"""Suite-wide settings."""

import torch

# The networks under test are tiny: one intra-op thread per test process is faster than
# several, and pytest-xdist already runs one process per core.
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "dask: starts a local dask.distributed cluster of worker processes (runs in CI; "
        "select with -m dask)",
    )
