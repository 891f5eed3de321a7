"""Points on the surfaces a frame's cameras see (`fourk4d.surface`): the hull lookup and its span along
a ray, the colour test, and points that lie nearer the true surfaces than the hull's own on a scene whose
hull is loose."""

from __future__ import annotations

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.data.synthetic import SyntheticWorld, load_synthetic, synthetic_config
from splat4d.methods.fourk4d.carve import CarveConfig, carve_frame, frame_masks, frame_points, frames_of
from splat4d.methods.fourk4d.surface import HullGrid, colour_matches

pytestmark = pytest.mark.usefixtures("one_thread")

LOOSE = dict(num_cameras=8, num_frames=2, width=64, height=64, test_cameras=(0,))


def _cube_grid(size=0.1):
    """A hull of the voxels whose centres lie in [-0.5, 0.5]^3, carved in the box [-1, 1]^3."""
    bounds = torch.tensor([[-1.0] * 3, [1.0] * 3])
    c = torch.arange(20) * size - 1 + size / 2
    centers = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
    return HullGrid(centers[(centers.abs() < 0.5).all(-1)], size, bounds), bounds


def test_hull_lookup_and_the_span_of_a_ray_through_it():
    grid, bounds = _cube_grid()
    assert grid(torch.tensor([[0.0, 0.0, 0.0], [0.45, -0.45, 0.3]])).all()
    assert not grid(torch.tensor([[0.55, 0.0, 0.0], [0.0, 0.0, 0.95], [3.0, 0.0, 0.0]])).any()
    o = torch.tensor([[-3.0, 0.05, 0.05], [-3.0, 0.75, 0.05]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    enter, leave = grid.span(o, d, bounds)
    assert abs(float(enter[0]) - 2.5) <= 0.05 + 1e-5 and abs(float(leave[0]) - 3.5) <= 0.05 + 1e-5
    assert float(leave[1]) < float(enter[1])  # passes beside the cube


def test_colour_matches_counts_cameras_that_see_the_colour_within_a_pixel():
    cams = Cameras.look_at([[0.0, -3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0]], [0.0, 0.0, 0.0], up=(0, 0, 1),
                           fov_deg=40, width=16, height=16)
    images = torch.zeros(3, 16, 16, 3)
    images[0, 7:9, 7:9] = torch.tensor([1.0, 0.0, 0.0])  # only camera 0 sees red at the centre
    images[1] = 0.5
    red = torch.tensor([[1.0, 0.0, 0.0]])
    assert colour_matches(torch.zeros(1, 3), red, cams, images).tolist() == [1]
    grey = torch.tensor([[0.55, 0.5, 0.45]])  # within 0.1 of camera 1's grey
    assert colour_matches(torch.zeros(1, 3), grey, cams, images).tolist() == [1]
    assert colour_matches(torch.tensor([[0.0, -5.0, 0.0]]), red, cams, images).tolist() == [0]  # behind camera 0


def test_points_on_rays_lie_nearer_the_surfaces_than_the_loose_hulls():
    scene = load_synthetic("default", **LOOSE)
    views = frames_of(scene, "train", 3)[0]
    cams = Cameras.cat([scene.camera(v) for v in views])
    masks = frame_masks(scene, views)
    cfg = CarveConfig(coarse_resolution=24, refine=2, points=3000)
    hull = carve_frame(cams, masks, scene.bounds, cfg, torch.Generator().manual_seed(0))
    images = torch.stack([torch.from_numpy(scene.image_uint8(v)).float() / 255.0 for v in views])
    pts = frame_points(hull, cams, masks, images, scene.bounds, cfg, torch.Generator().manual_seed(0))
    assert pts.shape == (3000, 3)
    assert HullGrid(hull.voxels, hull.voxel_size, scene.bounds)(pts).all()  # searched inside the hull only
    surface, _ = SyntheticWorld(synthetic_config("default", **LOOSE)).sample_points(100000, float(views[0].time))
    near = lambda p: torch.cdist(p, surface).min(1).values / hull.voxel_size  # noqa: E731
    on_rays, on_hull = near(pts).median(), near(hull.points).median()
    assert on_rays < 0.75 * on_hull, (float(on_rays), float(on_hull))
    cfg_hull = CarveConfig(coarse_resolution=24, refine=2, points=3000, points_from="hull")
    assert frame_points(hull, cams, masks, images, scene.bounds, cfg_hull) is hull.points


def test_lone_points_are_the_ones_far_from_the_crowd():
    from splat4d.methods.fourk4d.surface import lone_points

    g = torch.Generator().manual_seed(0)
    crowd = torch.rand(500, 3, generator=g) * torch.tensor([1.0, 1.0, 0.01])  # a thin sheet
    far = torch.tensor([[0.5, 0.5, 0.4], [2.0, 2.0, 2.0]])
    lone = lone_points(torch.cat([crowd, far]))
    assert lone[-2:].all() and lone[:-2].float().mean() < 0.05
    assert not lone_points(far).any()  # too few to tell
