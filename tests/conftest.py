"""Shared test setup: deterministic, CPU-only, offline."""

from __future__ import annotations

import pytest
import torch


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
