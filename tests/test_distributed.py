"""Data-parallel training: `torchrun --nproc_per_node 2 -m splat4d fit ...` with gloo on the CPU, batch 1 per
rank, reaches the parameters of one process with batch 2 and the same seed (densification included), and
only rank 0 writes the run folder."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ENV, SPLAT4D

from splat4d.train.checkpoint import load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")

# deformable on the tiny scene: coarse stage to 6, the HexPlane and MLP join after (their gradients are
# None on every rank before that), densification at 5 and 10 of 30 iterations (stop at half)
FLAGS = [
    "deformable", "--data", "synthetic:tiny", "--device", "cpu", "--iters", "30", "--save-every", "0", "--seed", "4",
    "--method.sh-degree", "1", "--method.max-init-points", "300", "--method.coarse-fraction", "0.2",
    "--method.grid-resolution", "8", "8", "8", "--method.multires", "1", "--method.grid-dim", "8",
    "--method.width", "16", "--method.densify.start", "4", "--method.densify.every", "5",
    "--method.densify.grad-threshold", "2e-5", "--method.densify.reset-every", "0",
]


@pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(), reason="no torchrun / torch.distributed")
def test_two_gloo_ranks_equal_one_process_with_twice_the_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r = subprocess.run(SPLAT4D + ["fit", *FLAGS, "--batch-size", "2", "--out", str(one)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "splat4d", "fit", *FLAGS,
                        "--batch-size", "1", "--out", str(two)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("wrote ") == 1  # only rank 0 reports and writes

    a, b = load_checkpoint(one, "deformable"), load_checkpoint(two, "deformable")
    assert a["step"] == b["step"] == 30
    assert a["model"].keys() == b["model"].keys()
    assert a["model"]["gaussians.means"].shape[0] != 300  # densification ran
    for k, va in a["model"].items():
        vb = b["model"][k]
        assert va.shape == vb.shape, k
        torch.testing.assert_close(vb.float(), va.float(), rtol=1e-3, atol=1e-4, msg=k)
    # the time planes start at ones: they moved, so the dynamic stage trained on both sides
    time_planes = [f"deformation.hexplane.grids.0.{i}" for i in (2, 4, 5)]
    assert all(not torch.equal(b["model"][k], torch.ones_like(b["model"][k])) for k in time_planes)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_python_dash_m_splat4d_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "splat4d", "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0 and "splat4d COMMAND" in r.stdout


ADCGS = [
    "adcgs", "--data", "synthetic:tiny", "--device", "cpu", "--iters", "30", "--save-every", "0", "--seed", "4",
    "--method.k", "3", "--method.feature-dim", "8", "--method.residual-dim", "4", "--method.time-dim", "8",
    "--method.time-feature-dim", "8", "--method.pe-freqs", "2", "--method.hidden", "8", "--method.deform-hidden", "8",
    "--method.max-init-anchors", "60", "--method.refine-every", "5", "--method.refine-start-fraction", "0.0",
    "--method.reseed-anchors", "6", "--method.max-anchors", "400",
]


@pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(), reason="no torchrun / torch.distributed")
def test_adcgs_ranks_grow_prune_and_reseed_alike(tmp_path):
    """Each rank notes the missed rays of its own views; every refinement must still edit all ranks' anchors
    alike (otherwise the gradient all-reduce meets tensors of different shapes and the run fails)."""
    out = tmp_path / "two"
    r = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "splat4d", "fit", *ADCGS,
                        "--batch-size", "1", "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint(out, "adcgs")
    assert ckpt["step"] == 30 and ckpt["model"]["field.anchors"].shape[0] > 0
