"""Depth-peeled point rendering (4K4D): the three selection backends agree index for index, the
composite matches a known answer and a hand-computed K-truncation, and gradients (autograd on the
gathered points) match finite differences."""

from __future__ import annotations

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.render.points import composite_points, project_points, render_points, select_nearest


def _camera(w: int = 24, h: int = 20) -> Cameras:
    return Cameras.look_at((0.0, -3.0, 0.5), (0.0, 0.0, 0.0), fov_deg=50.0, width=w, height=h)


def _points(n: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 1.6
    radii = 0.05 + 0.15 * torch.rand(n, generator=g, dtype=dtype)
    dens = 0.2 + 0.7 * torch.rand(n, generator=g, dtype=dtype)
    cols = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, radii, dens, cols


@pytest.mark.parametrize("k", [1, 4, 15])
@pytest.mark.parametrize("n", [1, 60, 400])
def test_selection_backends_agree(n, k):
    cam = _camera()
    means, radii, _, _ = _points(n, seed=n + k)
    uv, z, r = project_points(means, radii, cam)
    ref = select_nearest(uv, z, r, cam.width, cam.height, k, "dense")
    for backend in ("cpu", "torch"):
        got = select_nearest(uv, z, r, cam.width, cam.height, k, backend)
        assert torch.equal(got, ref), backend
    if n >= 60:
        assert (ref >= 0).sum() > 0 and (ref[..., 0] >= 0).float().mean() > 0.2  # the test covers pixels


def test_cpu_selection_skips_points_behind_the_camera_or_off_the_image():
    cam = _camera()
    means, radii, _, _ = _points(300, seed=5)
    means[:60, 1] -= 4.0  # behind the camera (it sits at y = -3 looking along +y)
    means[60:120, 0] += 3.0  # beside the image
    means[120:130] = means[130:140]  # equal depths, decided by index
    uv, z, r = project_points(means, radii, cam)
    ref = select_nearest(uv, z, r, cam.width, cam.height, 8, "dense")
    assert torch.equal(select_nearest(uv, z, r, cam.width, cam.height, 8, "cpu"), ref)
    assert not torch.isin(ref, torch.arange(120)).any() and (ref >= 0).any()


def test_cpu_selection_never_draws_a_point_with_a_nan_position():
    cam = _camera()
    means, radii, _, _ = _points(100, seed=6)
    means[7, 0] = float("nan")
    means[8, 2] = float("inf")
    means[9, 1] = float("nan")  # its depth
    uv, z, r = project_points(means, radii, cam)
    got = select_nearest(uv, z, r, cam.width, cam.height, 6, "cpu")
    keep = torch.ones(100, dtype=torch.bool)
    keep[7:10] = False
    sub = torch.nonzero(keep)[:, 0]
    ref = select_nearest(uv[keep], z[keep], r[keep], cam.width, cam.height, 6, "dense")
    assert torch.equal(got, torch.where(ref >= 0, sub[ref.clamp(min=0)], ref))


def test_selection_is_front_to_back_and_ties_go_to_the_lower_index():
    cam = _camera(8, 8)
    means = torch.tensor([[0.0, 0.0, 0.0]] * 3 + [[0.0, -1.0, 0.0]], dtype=torch.float64)  # 3 at one depth, 1 nearer
    radii = torch.full((4,), 0.5, dtype=torch.float64)
    uv, z, r = project_points(means, radii, cam)
    for backend in ("dense", "cpu", "torch"):
        idx = select_nearest(uv, z, r, 8, 8, 3, backend)
        assert idx[4, 4].tolist() == [3, 0, 1], backend


def test_cpu_selection_does_not_depend_on_the_order_it_visits_points():
    import numpy as np

    from splat4d.render.points import conic_extent
    from splat4d.render.points_cpu import _select

    cam = _camera()
    means, radii, _, _ = _points(200, seed=3)
    means[100:150] = means[:50]  # coincident pairs: equal depths, decided by index
    uv, z, r = project_points(means, radii, cam)
    ref = select_nearest(uv, z, r, cam.width, cam.height, 6, "dense")
    for order in (np.arange(200)[::-1].copy(), np.random.default_rng(0).permutation(200)):
        q = r[order].numpy().copy()
        ex, ey = (e.numpy().copy() for e in conic_extent(r[order]))
        got = _select(uv[order, 0].numpy().copy(), uv[order, 1].numpy().copy(), z.numpy().copy(),  # z by point
                      q, ex, ey, order.astype(np.int64), cam.width, cam.height, 6,
                      np.array([0, 7, 8, cam.height]))
        assert torch.equal(torch.from_numpy(got), ref)


def test_one_point_known_alpha_and_truncation():
    cam = _camera(9, 9)
    means = torch.zeros(1, 3, dtype=torch.float64)
    uv, z, _ = project_points(means, torch.ones(1, dtype=torch.float64), cam)
    f = float(cam.Ks[0, 0, 0])
    radius = 3.0 * float(z[0]) / f  # 3 pixels on screen
    out = render_points(means, torch.tensor([radius], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64),
                        torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), cam, k=2, backend="dense")
    ys, xs = torch.meshgrid(torch.arange(9, dtype=torch.float64) + 0.5, torch.arange(9, dtype=torch.float64) + 0.5,
                            indexing="ij")
    d2 = (xs - uv[0, 0]) ** 2 + (ys - uv[0, 1]) ** 2
    expect = torch.where(d2 < 9.0, 0.8 * (1 - d2 / 9.0), torch.zeros_like(d2))
    assert torch.allclose(out["alpha"], expect, atol=1e-9)
    assert torch.allclose(out["rgb"][..., 0], expect, atol=1e-9) and out["rgb"][..., 1:].abs().max() == 0
    # five stacked points, k = 2: only the two nearest count
    means5 = torch.tensor([[0.0, 0.1 * i, 0.0] for i in range(5)], dtype=torch.float64)
    cols5 = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    out5 = render_points(means5, torch.full((5,), 0.6, dtype=torch.float64), torch.full((5,), 0.5, dtype=torch.float64),
                         cols5, cam, k=2, backend="torch")
    w = out5["weights"][4, 4]
    assert out5["idx"][4, 4].tolist() == [0, 1]
    assert torch.allclose(out5["rgb"][4, 4], w[0] * cols5[0] + w[1] * cols5[1], atol=1e-12)


def test_gradients_match_finite_differences():
    cam = _camera(10, 8)
    means, radii, dens, cols = _points(12, seed=3)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    uv, z, r = project_points(means, radii, cam)
    idx = select_nearest(uv, z, r, 10, 8, 4, "cpu")  # fixed selection: the differentiable part only

    def f(m, rad, d, c):
        u, zz, rr = project_points(m, rad, cam)
        o = composite_points(idx, u, zz, rr, d, c, bg)
        return o["rgb"].sum() + 0.3 * o["depth"].sum() + 0.7 * o["alpha"].sum()

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, radii, dens, cols))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-5)


def test_gradients_reach_every_input_through_render_points():
    cam = _camera()
    means, radii, dens, cols = (t.float().requires_grad_(True) for t in _points(80, seed=1))
    out = render_points(means, radii, dens, cols, cam, k=5)
    out["rgb"].sum().backward()
    for t in (means, radii, dens, cols):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    a = out["alpha"].detach()
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 and float(a.max()) > 0.5


def test_fused_cpu_peel_matches_the_torch_composite():
    from splat4d.render.points_cpu import peel_cpu

    cam = _camera(30, 22)
    means, radii, dens, cols = _points(300, seed=5)
    bg = torch.tensor([0.2, 0.1, 0.4], dtype=torch.float64)
    uv, z, r = project_points(means, radii, cam)
    idx = select_nearest(uv, z, r, 30, 22, 6, "dense")
    ref = composite_points(idx, uv, z, r, dens, cols, bg)
    got = peel_cpu(means, radii, dens, cols, cam, 6, bg)
    assert torch.equal(got["idx"], idx)
    for key in ("rgb", "alpha", "depth"):
        assert torch.allclose(got[key], ref[key], atol=1e-12), key
    with torch.no_grad():  # render_points takes the fused path without gradients
        out = render_points(means, radii, dens, cols, cam, k=6, background=bg)
    assert "weights" not in out and torch.allclose(out["rgb"], ref["rgb"], atol=1e-12)
    asked = []

    def shade(need):  # colours only where some pixel composites a point; garbage elsewhere must not show
        asked.append(need)
        return torch.where(need[:, None], cols, torch.full_like(cols, float("nan")))

    lazy = peel_cpu(means, radii, dens, shade, cam, 6, bg)
    assert torch.equal(lazy["rgb"], got["rgb"])
    from splat4d.render.points_cpu import used_points

    need = used_points(means, radii, cam, 6)
    assert torch.equal(asked[0], need) and torch.equal(need.nonzero()[:, 0], torch.unique(idx[idx >= 0]))
    assert 0 < int(need.sum()) < len(means)
