"""Suite-wide settings."""

import torch

# The networks under test are tiny: one intra-op thread per test process is faster than
# several, and pytest-xdist already runs one process per core.
torch.set_num_threads(1)
