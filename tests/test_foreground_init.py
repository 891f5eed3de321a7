"""Initial points on rays through foreground pixels, the scene-proportionate growth cap and the HexPlane
time resolution chosen from the capture."""

import numpy as np
import pytest
import torch

from splat4d.data import load_scene
from splat4d.data.foreground import foreground_mask, foreground_rays, points_on_rays
from splat4d.methods.deformable import MAX_TIME_RESOLUTION, DeformableConfig, DeformableGaussians, auto_time_resolution
from splat4d.train.densify import MAX_GAUSSIANS, auto_max_gaussians


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


def test_foreground_mask_ignores_the_background_colour():
    img = np.full((4, 5, 3), 255, np.uint8)
    img[1, 2] = (255, 0, 0)
    img[3, 4] = (250, 250, 250)  # within the threshold of white
    m = foreground_mask(img, (1.0, 1.0, 1.0))
    assert m.sum() == 1 and m[1, 2]


def test_points_lie_on_foreground_rays_inside_the_box(scene):
    rays = foreground_rays(scene)
    assert len(rays.origins) > 0 and rays.pixels_per_view > 0
    gen = torch.Generator().manual_seed(0)
    pts, cols, times = points_on_rays(rays, scene.bounds, 500, gen)
    assert pts.shape == (500, 3) and cols.shape == (500, 3)
    lo, hi = scene.bounds
    assert bool(((pts >= lo - 1e-4) & (pts <= hi + 1e-4)).all())
    # every point projects onto a foreground pixel of some training view with that pixel's colour, and
    # carries that view's time
    views = scene.split("train")
    cams = scene.cameras("train")
    hits = torch.zeros(len(pts), dtype=torch.bool)
    for i, v in enumerate(views):
        img = scene.image_uint8(v)
        fg = torch.from_numpy(foreground_mask(img, scene.background))
        xy = cams[i].project(pts)[0][0]  # [N, 2]
        px = xy.floor().long()
        ok = (px[:, 0] >= 0) & (px[:, 0] < cams.width) & (px[:, 1] >= 0) & (px[:, 1] < cams.height)
        on = torch.zeros_like(ok)
        on[ok] = fg[px[ok, 1], px[ok, 0]]
        same = (torch.from_numpy(img)[px[ok, 1], px[ok, 0]].float() / 255 - cols[ok]).abs().max(-1).values < 1e-6
        on[ok] &= same
        hits |= on & (times == float(v.time))
    assert hits.float().mean() > 0.99


def test_no_foreground_gives_no_points(scene):
    blank = load_scene("synthetic:tiny", objects=())
    rays = foreground_rays(blank)
    assert len(rays.origins) == 0 and rays.pixels_per_view == 0
    pts, _, _ = points_on_rays(rays, blank.bounds, 100, torch.Generator().manual_seed(0))
    assert pts.shape == (0, 3)


def test_init_adds_foreground_points_and_resolves_the_cap(scene):
    cfg = DeformableConfig(foreground_init_points=300)
    m = DeformableGaussians.from_scene(scene, cfg, torch.Generator().manual_seed(0))
    assert len(m.gaussians) == len(scene.points) + 300
    assert cfg.densify.max_gaussians == auto_max_gaussians(foreground_rays(scene).pixels_per_view, len(m.gaussians))
    off = DeformableConfig(foreground_init_points=0)
    assert len(DeformableGaussians.from_scene(scene, off, torch.Generator().manual_seed(0)).gaussians) == len(scene.points)


def test_growth_cap_is_proportionate_and_bounded():
    assert auto_max_gaussians(1000.0, 10) == 4000
    assert auto_max_gaussians(1000.0, 9000) == 9000  # never below the initial count
    assert auto_max_gaussians(1e9, 10) == MAX_GAUSSIANS


def test_time_resolution_follows_the_capture():
    assert auto_time_resolution(24, 12.0) == 24  # multi-view: a knot per frame
    assert auto_time_resolution(150, 1.0) == 75  # monocular: a knot per two frames
    assert auto_time_resolution(1000, 20.0) == MAX_TIME_RESOLUTION
    assert auto_time_resolution(1, 1.0) == 2


def test_dynamic_rays_find_what_moves_under_a_fixed_camera():
    from splat4d.data.foreground import dynamic_rays
    from splat4d.data.synthetic import load_synthetic

    moving = load_synthetic("tiny", num_frames=6)
    rays = dynamic_rays(moving)
    assert rays is not None and len(rays.origins) > 0 and rays.pixels_per_view > 0
    train_times = torch.tensor([float(v.time) for v in moving.split("train")])
    assert ((rays.times[:, None] - train_times[None]).abs().min(1).values < 1e-6).all()
    torch.testing.assert_close(rays.dirs.norm(dim=-1), torch.ones(len(rays.dirs)), atol=1e-5, rtol=0)
    still = dynamic_rays(load_synthetic("tiny", num_frames=6, speed=0.0))
    assert still is not None and len(still.origins) == 0  # nothing changes, nothing is dynamic
    # a monocular schedule: no camera sees 3 frames, so there is no fixed background to compare with
    mono = load_synthetic("tiny", schedule="monocular", num_cameras=64, num_frames=16, test_every=4)
    assert dynamic_rays(mono) is None
