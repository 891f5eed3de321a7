"""Points drawn as discs (a normal per point): a disc facing the camera is a round point widened by the
pixel floor, one seen edge-on is a pixel-wide line, a tilted one covers cos(tilt) of the facing one's
pixels; the three selection backends agree, the numba peel matches the torch composite, gradients match
finite differences, and zero normals leave a round point's render unchanged to the bit."""

from __future__ import annotations

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.render.points import DISC_MIN_PX, composite_points, project_points, render_points, select_nearest


def _camera(w: int = 24, h: int = 20) -> Cameras:
    return Cameras.look_at((0.0, -3.0, 0.5), (0.0, 0.0, 0.0), fov_deg=50.0, width=w, height=h)


def _facing_camera(size: int = 41) -> Cameras:
    return Cameras.look_at((0.0, -4.0, 0.0), (0.0, 0.0, 0.0), fov_deg=40.0, width=size, height=size)


def _discs(n: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 1.6
    radii = 0.05 + 0.2 * torch.rand(n, generator=g, dtype=dtype)
    dens = 0.2 + 0.7 * torch.rand(n, generator=g, dtype=dtype)
    cols = torch.rand(n, 3, generator=g, dtype=dtype)
    normals = torch.randn(n, 3, generator=g, dtype=dtype)
    normals[::3] = 0.0  # every third a round point
    return means, radii, dens, cols, normals


def _alpha(normal, radius: float = 0.4, cam: Cameras | None = None):
    cam = cam or _facing_camera()
    means = torch.zeros(1, 3, dtype=torch.float64)
    n = torch.tensor([normal], dtype=torch.float64)
    out = render_points(means, torch.tensor([radius], dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                        torch.ones(1, 3, dtype=torch.float64), cam, k=1, backend="dense", normals=n)
    return out["alpha"], cam


def test_a_disc_facing_the_camera_is_a_round_point_widened_by_the_pixel_floor():
    alpha, cam = _alpha((0.0, 1.0, 0.0))  # the camera looks along +y
    uv, z, _ = project_points(torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, dtype=torch.float64), cam)
    r_px = 0.4 * float(cam.Ks[0, 0, 0]) / float(z[0])
    ys, xs = torch.meshgrid(torch.arange(41, dtype=torch.float64) + 0.5, torch.arange(41, dtype=torch.float64) + 0.5,
                            indexing="ij")
    d2 = (xs - uv[0, 0]) ** 2 + (ys - uv[0, 1]) ** 2
    s = r_px ** 2 + DISC_MIN_PX ** 2
    assert torch.allclose(alpha, (1 - d2 / s).clamp(min=0.0), atol=1e-9)
    assert torch.equal(_alpha((0.0, -2.0, 0.0))[0], alpha)  # a normal's sign and length do not matter


def test_a_disc_seen_edge_on_is_a_line_one_pixel_wide():
    alpha, _ = _alpha((1.0, 0.0, 0.0))  # its plane holds the viewing direction and the image's vertical
    cols = (alpha > 0).any(0).nonzero()[:, 0]
    rows = (alpha > 0).any(1).nonzero()[:, 0]
    assert len(cols) == 1 and len(rows) > 10


@pytest.mark.parametrize("tilt", [30.0, 60.0])
def test_a_tilted_disc_covers_cos_tilt_of_the_facing_one(tilt):
    cam = _facing_camera(121)
    facing = float((_alpha((0.0, 1.0, 0.0), 0.5, cam)[0] > 0).sum())
    t = math.radians(tilt)
    tilted = float((_alpha((0.0, math.cos(t), math.sin(t)), 0.5, cam)[0] > 0).sum())
    assert tilted / facing == pytest.approx(math.cos(t), rel=0.08)


@pytest.mark.parametrize("k", [1, 6])
def test_selection_backends_agree_on_discs(k):
    cam = _camera()
    means, radii, _, _, normals = _discs(150, seed=k)
    uv, z, q = project_points(means, radii, cam, normals)
    ref = select_nearest(uv, z, q, cam.width, cam.height, k, "dense")
    assert (ref[..., 0] >= 0).float().mean() > 0.3
    for backend in ("cpu", "torch"):
        assert torch.equal(select_nearest(uv, z, q, cam.width, cam.height, k, backend), ref), backend


def test_zero_normals_change_nothing():
    cam = _camera()
    means, radii, dens, cols, _ = _discs(120, seed=4)
    plain = render_points(means, radii, dens, cols, cam, k=5, backend="torch")
    zero = render_points(means, radii, dens, cols, cam, k=5, backend="torch", normals=torch.zeros_like(means))
    for key in ("rgb", "alpha", "depth", "idx"):
        assert torch.equal(plain[key], zero[key]), key


def test_numba_peel_matches_the_torch_composite_on_discs():
    from splat4d.render.points_cpu import peel_cpu, used_points

    cam = _camera(30, 22)
    means, radii, dens, cols, normals = _discs(300, seed=5)
    bg = torch.tensor([0.2, 0.1, 0.4], dtype=torch.float64)
    uv, z, q = project_points(means, radii, cam, normals)
    idx = select_nearest(uv, z, q, 30, 22, 6, "dense")
    ref = composite_points(idx, uv, z, q, dens, cols, bg)
    got = peel_cpu(means, radii, dens, cols, cam, 6, bg, normals)
    assert torch.equal(got["idx"], idx)
    for key in ("rgb", "alpha", "depth"):
        assert torch.allclose(got[key], ref[key], atol=1e-10), key
    need = used_points(means, radii, cam, 6, normals)
    assert torch.equal(need, torch.isin(torch.arange(300), idx[idx >= 0]))


def test_disc_gradients_match_finite_differences():
    cam = _camera(10, 8)
    means, radii, dens, cols, normals = _discs(12, seed=3)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    uv, z, q = project_points(means, radii, cam, normals)
    idx = select_nearest(uv, z, q, 10, 8, 4, "cpu")  # fixed selection: the differentiable part only
    sel = idx[idx >= 0].unique()
    assert len(sel) >= 4 and bool((normals[sel] != 0).any(-1).any())  # discs among the composited points

    def f(m, rad, d, c, n):
        u, zz, qq = project_points(m, rad, cam, n)
        o = composite_points(idx, u, zz, qq, d, c, bg)
        return o["rgb"].sum() + 0.3 * o["depth"].sum() + 0.7 * o["alpha"].sum()

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, radii, dens, cols, normals))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-5)
