"""The fused numba SSIM of the training loss (train/ssim_cpu.py) against its torch twin metrics.ssim:
values and gradients on random images of several shapes, gradcheck in float64, and photometric_loss
with and without it."""

import pytest
import torch

from splat4d.metrics import ssim
from splat4d.train.losses import photometric_loss
from splat4d.train.ssim_cpu import ssim_cpu


def pair(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=dtype)
    b = (a + 0.2 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("shape", [(1, 40, 37, 3), (3, 16, 21, 3), (2, 5, 7, 1), (1, 64, 64, 4)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_torch_ssim(shape, dtype, tol):
    """Images smaller than the 11-tap window included (every tap meets the zero padding)."""
    a, b = pair(shape, dtype)
    x1, x2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    s1, s2 = ssim_cpu(x1, b), ssim(x2, b)
    assert s1.dtype == dtype and s1.shape == ()
    assert abs(s1.item() - s2.item()) <= tol
    (-2.5 * s1).backward()
    (-2.5 * s2).backward()
    assert ((x1.grad - x2.grad).abs().max() / x2.grad.abs().max()).item() <= 10 * tol + 1e-12


def test_gradcheck_float64():
    a, b = pair((2, 9, 13, 3), torch.float64, seed=1)
    assert torch.autograd.gradcheck(lambda x: ssim_cpu(x, b), (a.requires_grad_(),), eps=1e-6, atol=1e-8)


def test_identical_images_and_no_grad():
    a, _ = pair((1, 20, 20, 3), torch.float32)
    with torch.no_grad():
        assert abs(ssim_cpu(a, a).item() - 1.0) < 1e-5


def test_bad_shapes_are_refused():
    a, b = pair((1, 8, 8, 3), torch.float32)
    with pytest.raises(ValueError, match="one shape"):
        ssim_cpu(a, b[:, :4])


@pytest.mark.parametrize("lambda_ssim", [0.0, 0.2, 1.0])
def test_photometric_loss_fused_as_unfused(lambda_ssim):
    a, b = pair((2, 30, 26, 3), torch.float32, seed=3)
    res = []
    for fused in (True, False):
        x = a.clone().requires_grad_()
        loss, logs = photometric_loss(x, b, lambda_ssim, fused=fused)
        loss.backward()
        res.append((loss.item(), logs, x.grad))
    (la, loga, ga), (lb, logb, gb) = res
    assert abs(la - lb) <= 1e-6 and loga == logb
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-7)
