"""Keep torch's thread count across calls into scanpy's numba kernels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after the enclosed code.

    scanpy's numba-parallel kernels (OpenMP threading layer) share torch's OpenMP
    runtime and reset its thread count to numba's; without this, a thread count set by
    the user (``torch.set_num_threads``) is silently lost.
    """
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
