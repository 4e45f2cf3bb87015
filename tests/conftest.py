"""Shared test setup: deterministic, CPU-only, offline."""

from __future__ import annotations

import os

import pytest
import torch

#: Intra-op threads for the whole session. Results of training and of large reductions may
#: depend on the thread count (the order of summation), so the session pins it: 1 by default
#: (fastest for these small tensors), ``INITLAB_TEST_THREADS=2`` to try another count.
TEST_THREADS = int(os.environ.get("INITLAB_TEST_THREADS", "1"))


def pytest_configure(config):
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def _deterministic():
    """Flush subnormals (vanishing activations make them; they slow CPU tenfold) and keep the
    global RNG fixed for any code that (wrongly) reads it."""
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    yield


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator; pass it as ``generator=``."""
    return torch.Generator().manual_seed(1234)
