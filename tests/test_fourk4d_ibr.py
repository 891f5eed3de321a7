"""4K4D's image-based appearance: source colours sampled where points project (checked against the
renderer's exact surface colours), nearest-view choice, softmax blend and the SH residual."""

from __future__ import annotations

import torch

from splat4d.cameras import Cameras
from splat4d.data.synthetic import SyntheticWorld, load_synthetic, synthetic_config
from splat4d.methods.fourk4d.ibr import (
    SH_SCALE,
    BlendNet,
    blend,
    nearest_views,
    point_colors,
    sample_colors,
    sh_residual,
    source_dirs,
)


def test_sampled_colours_are_the_surface_colours_where_a_camera_sees_the_point():
    opts = dict(objects=("ground",), num_cameras=6, num_frames=1, width=96, height=96, elevations_deg=(60.0,),
                test_cameras=(0,))
    scene = load_synthetic("default", **opts)
    views = scene.split("train")
    cams = Cameras.cat([scene.camera(v) for v in views])
    images = torch.stack([scene.image(v) for v in views])
    world = SyntheticWorld(synthetic_config("default", **opts))
    pts, rgb = world.sample_points(300, t=0.0, seed=3)
    middle = pts[:, :2].norm(dim=-1) < 0.5  # the middle of the disc: every camera sees it, nothing occludes
    pts, rgb = pts[middle], rgb[middle]
    col, valid = sample_colors(pts, cams, images)
    assert valid.all()
    # bilinear sampling of a checker: most points sit inside a square, away from an edge
    err = (col - rgb[:, None]).abs().amax(-1)
    assert float(err.median()) < 0.02, float(err.median())
    assert float((err < 0.05).float().mean()) > 0.8


def test_points_outside_or_behind_a_camera_are_invalid():
    cam = Cameras.look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), width=16, height=16)
    images = torch.rand(1, 16, 16, 3)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, -5.0, 0.0], [10.0, 0.0, 0.0]])
    _, valid = sample_colors(pts, cam, images)
    assert valid[:, 0].tolist() == [True, False, False]


def test_nearest_views_by_direction_and_never_itself():
    ring = torch.stack([torch.tensor([torch.cos(a), torch.sin(a), 0.3]) for a in torch.arange(8) * (torch.pi / 4)])
    idx = nearest_views(ring[2:3], ring, torch.zeros(3), 2)
    assert sorted(idx[0].tolist()) == [1, 3]
    idx = nearest_views(ring[2:3] * 1.01, ring, torch.zeros(3), 1, exclude_same=False)
    assert idx[0].tolist() == [2]


def test_blend_is_a_softmax_over_chosen_valid_views():
    colors = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)), 5.0]])
    valid = torch.tensor([[True, True, False]])
    out = blend(colors, logits, valid, torch.tensor([0, 1, 2]))
    assert torch.allclose(out, torch.tensor([[0.25, 0.75, 0.0]]), atol=1e-6)
    none = blend(colors, logits, torch.zeros_like(valid), torch.tensor([0, 1]))
    assert torch.equal(none, torch.zeros(1, 3))


def test_sh_residual_is_bounded_and_follows_degree_zero():
    sh = torch.zeros(5, 16, 3)
    sh[:, 0] = 10.0
    res = sh_residual(sh, torch.rand(5, 3), torch.tensor([0.0, 0.0, 5.0]))
    assert torch.allclose(res, torch.full_like(res, SH_SCALE * float(torch.tanh(torch.tensor(10.0 * 0.28209479177387814)))))
    assert point_colors(torch.full((5, 3), 0.9), res).max() == 1.0


def test_blend_net_gradients_reach_features_and_colours():
    net = BlendNet(8)
    cam = Cameras.orbit(4, radius=3.0)
    pts = torch.rand(10, 3)
    feats = torch.randn(10, 8, requires_grad=True)
    cols = torch.rand(10, 4, 3, requires_grad=True)
    dirs = source_dirs(pts, cam)
    logits = net(feats, cols, dirs)
    assert logits.shape == (10, 4)
    blend(cols, logits, torch.ones(10, 4, dtype=torch.bool), torch.arange(4)).sum().backward()
    assert feats.grad.abs().sum() > 0 and cols.grad.abs().sum() > 0


def test_blend_net_without_gradients_gives_the_same_logits_in_chunks(monkeypatch):
    from splat4d.methods.fourk4d import ibr

    g = torch.Generator().manual_seed(2)
    net = BlendNet(8)
    feats, cols, dirs = torch.randn(50, 8, generator=g), torch.rand(50, 5, 3, generator=g), torch.randn(50, 5, 3, generator=g)
    whole = net(feats, cols, dirs)  # with gradients: one pass
    monkeypatch.setattr(ibr, "BLEND_CHUNK", 7)
    with torch.no_grad():
        chunked = net(feats, cols, dirs)
    assert chunked.shape == (50, 5) and torch.allclose(chunked, whole.detach(), atol=1e-6, rtol=0)
