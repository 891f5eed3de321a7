"""The fused numba HexPlane kernels against their torch twin (grid_sample): values and gradients."""

import pytest
import torch

from splat4d.fields.hexplane import HexPlane


def _run(field: HexPlane, backend: str, xyz: torch.Tensor, t, weights: torch.Tensor):
    field.backend = backend
    field.zero_grad(set_to_none=True)
    x = xyz.detach().clone().requires_grad_(True)
    out = field(x, t)
    (out * weights).sum().backward()
    return out.detach(), x.grad, [p.grad.clone() for p in field.parameters()]


@pytest.mark.parametrize("resolution,out_dim,multires", [
    ((6, 5, 7, 4), 3, (1, 2)),
    ((4, 4, 4, 25), 16, (1, 2, 4)),
    ((1, 3, 2, 1), 2, (1,)),  # single-texel axes read texel 0 and pass no gradient
])
@pytest.mark.parametrize("fused", [True, False])  # channels-last planes read in place / the flat-copy kernels
def test_matches_grid_sample(resolution, out_dim, multires, fused):
    g = torch.Generator().manual_seed(0)
    bounds = torch.tensor([[-1.0, -2.0, -1.0], [1.0, 2.0, 3.0]])
    field = HexPlane(bounds, resolution=resolution, out_dim=out_dim, multires=multires, fused=fused)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
    lo, hi = bounds
    xyz = lo + (hi - lo) * (torch.rand(300, 3, generator=g) * 1.2 - 0.1)  # ~half the points partly outside
    t = torch.rand(300, generator=g) * 1.2 - 0.1
    w = torch.randn(300, field.feat_dim, generator=g)
    w[::3] = 0.0  # points whose features get no gradient are skipped by the backward
    ref = _run(field, "torch", xyz, t, w)
    got = _run(field, "cpu", xyz, t, w)
    torch.testing.assert_close(got[0], ref[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-4)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert all(p.is_contiguous(memory_format=torch.channels_last) == fused for p in field.parameters()
               if min(p.shape[2:]) > 1)


def test_zero_plane_values_keep_gradients():
    """A zero sample must not hide the gradients of the other five planes (no division by the product)."""
    field = HexPlane(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=(3, 3, 3, 3), out_dim=1, multires=(1,))
    with torch.no_grad():
        field.grids[0][0].zero_()
    w = torch.ones(5, 1)
    xyz = torch.rand(5, 3) * 2 - 1
    ref = _run(field, "torch", xyz, 0.5, w)
    got = _run(field, "cpu", xyz, 0.5, w)
    assert got[2][0].abs().sum() > 0
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b)


def test_auto_backend_choice():
    field = HexPlane(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=(3, 3, 3, 3), out_dim=2, multires=(1,))
    assert field._use_cpu_kernels(torch.zeros(1, 4))
    assert not field._use_cpu_kernels(torch.zeros(1, 4, dtype=torch.float64))  # float64 goes through torch
    field.backend = "cpu"
    with pytest.raises(ValueError, match="float32"):
        field(torch.zeros(2, 3, dtype=torch.float64), 0.0)
    with pytest.raises(ValueError, match="backend"):
        HexPlane(torch.tensor([[-1.0] * 3, [1.0] * 3]), backend="gpu")


@pytest.mark.parametrize("resolution,multires", [
    ((6, 5, 7, 4), (1, 2)),
    ((1, 2, 3, 2), (1,)),  # one-texel and two-texel axes: empty differences add nothing
    ((8, 8, 8, 25), (1, 2, 3)),
])
@pytest.mark.parametrize("upstream", [1.0, -2.5])
def test_fused_regularisers_match_torch(resolution, multires, upstream):
    """plane_tv, time_smoothness and time_l1 (weighted) in one numba pass vs the torch expressions."""
    g = torch.Generator().manual_seed(1)
    field = HexPlane(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=resolution, out_dim=3, multires=multires)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 0.5)  # values on both sides of 1 (L1's kink)
        field.grids[0][2][0, 0, 0, 0] = 1.0  # exactly at the kink: abs' gradient is 0 there
    weights = (2e-4, 1e-3, 3e-4)
    res = []
    for fused in (True, False):
        field.zero_grad(set_to_none=True)
        r = field.regularisation(*weights, fused=fused)
        (upstream * r).backward()
        res.append((r.detach(), [p.grad.clone() for p in field.parameters()]))
    (va, ga), (vb, gb) = res
    assert va.dtype == torch.float32 and va.shape == ()
    torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-9)
    for a, b in zip(ga, gb):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


def test_plane_layout_does_not_change_values_or_checkpoints():
    """Channels-last planes are an in-memory layout only: state dicts load across layouts."""
    g = torch.Generator().manual_seed(2)
    a = HexPlane(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=(5, 4, 3, 6), out_dim=4, multires=(1, 2), fused=True)
    b = HexPlane(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=(5, 4, 3, 6), out_dim=4, multires=(1, 2), fused=False)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.rand(p.shape, generator=g))
    b.load_state_dict(a.state_dict())
    xyz = torch.rand(50, 3, generator=g) * 2 - 1
    torch.testing.assert_close(a(xyz, 0.3), b(xyz, 0.3))
    a.load_state_dict(b.state_dict())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in a.parameters())
