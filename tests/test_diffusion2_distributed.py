"""The image-matrix sampler under torchrun with two gloo ranks gives the matrix of one process (same seed)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ENV

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("diffusion2_worker.py")


@pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(), reason="no torchrun / torch.distributed")
@pytest.mark.parametrize("views,frames", [(4, 5), (3, 1)])  # uneven shares; a rank with no column of its own
def test_two_gloo_ranks_give_the_one_process_matrix(tmp_path, views, frames):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    r = subprocess.run([sys.executable, str(WORKER), str(one), str(views), str(frames)], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(WORKER), str(two), str(views),
                        str(frames)], capture_output=True, text=True, env=ENV, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert a.shape == (views, frames, 2, 8, 8) and torch.isfinite(a).all()
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
