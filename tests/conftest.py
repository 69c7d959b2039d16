from collections.abc import Iterator
from pathlib import Path
import sys

import pytest
import torch

# Helper modules of the tests (synthetic objectives, worker scripts) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Small models run faster on one thread, and CI machines are small and shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
