"""Small torch helpers shared by the modules that run networks on the CPU."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with ``n_threads`` intra-op threads (``None``: leave as is), then restore.

    Fitting a small ensemble or timing a model on a shared machine is faster, and less noisy,
    on a fixed thread count than on every core.
    """
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
