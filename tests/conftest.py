"""Suite-wide settings."""

import os

import torch
from hypothesis import HealthCheck, settings

# The networks under test are tiny: one intra-op thread per test process is faster than
# several, and pytest-xdist already runs one process per core.
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "dask: starts a local dask.distributed cluster of worker processes (runs in CI; "
        "select with -m dask)",
    )


# Property tests: a quick profile for every run, thousands of examples for the nightly
# job (HYPOTHESIS_PROFILE=nightly). Tests that set their own max_examples keep them.
settings.register_profile("ci", max_examples=40, deadline=None)
settings.register_profile(
    "nightly",
    max_examples=4000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
