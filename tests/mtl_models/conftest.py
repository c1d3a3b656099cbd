"""Shared fixtures for the mtl_models unit tests: fixed seeds, one CPU thread."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors run faster, and with steadier timing on a busy machine, on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Seed torch (weight init, dropout, shuffling) and numpy's global state for every test."""
    torch.manual_seed(0)
    np.random.seed(0)
