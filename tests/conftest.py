"""Shared test helpers: how to call the installed CLI, and one-thread runs on the shared 2 cores."""

import os
import sys
from pathlib import Path

import numba
import pytest
import torch

_SCRIPT = Path(sys.executable).with_name("splat4d")  # the installed console script
SPLAT4D = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "splat4d.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny scenes on 2 shared cores: extra torch/numba threads only contend."""
    n_torch, n_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(n_torch)
    numba.set_num_threads(n_numba)


@pytest.fixture
def no_lpips_weights(monkeypatch):
    """LPIPS weights absent whatever the machine's environment says (LPIPS is "unavailable")."""
    monkeypatch.delenv("SPLAT4D_LPIPS_WEIGHTS", raising=False)
