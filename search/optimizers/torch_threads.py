"""How many torch intra-op threads an optimiser's suggestion runs on (the BO optimisers and Ax's)."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (restored afterwards); None leaves torch alone.

    The many tiny tensor ops of model fits and box decompositions run several times faster on
    one thread than on two contended ones (``AcquisitionOptions.threads``).
    """
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
