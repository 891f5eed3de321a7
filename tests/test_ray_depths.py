"""Depths on foreground rays chosen by agreement with the views nearest in time (`data.ray_depths`): on a
monocular capture of one moving sphere, the chosen points lie on the sphere, where uniform depths do not;
on a checkered floor the photo cost finds the floor where counting colour matches does not."""

from __future__ import annotations

import pytest
import torch

from splat4d.data.foreground import foreground_rays, points_on_rays
from splat4d.data.ray_depths import COST_CAP, _Images, consistent_points_on_rays, photo_cost, static_points, votes
from splat4d.data.synthetic import SyntheticWorld, load_synthetic, synthetic_config

SPHERE = dict(objects=("sphere",), num_cameras=12, num_frames=40, width=48, height=48, speed=0.3,
              elevations_deg=(15.0, 40.0, 65.0), schedule="monocular", test_cameras=(0,))


@pytest.fixture(scope="module")
def scene():
    return load_synthetic("default", **SPHERE)


def _outside_ball(world, pts: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Distance of each point from the sphere's ball at the point's time (0 inside)."""
    ball = world.object("sphere")
    centres = torch.stack([torch.as_tensor(ball.center(float(t)), dtype=torch.float32) for t in times])
    return ((pts - centres).norm(dim=-1) - world.cfg.sphere_radius).clamp_min(0)


def test_chosen_depths_lie_on_the_object(scene):
    world = SyntheticWorld(synthetic_config("default", **SPHERE))
    rays = foreground_rays(scene)
    box = torch.tensor([[-2.0, -2.0, -1.0], [2.0, 2.0, 1.5]])  # a loose box, as D-NeRF's random cloud gives
    pts, cols, times = consistent_points_on_rays(rays, scene, box, 300, torch.Generator().manual_seed(0))
    assert pts.shape == (300, 3) and cols.shape == (300, 3) and times.shape == (300,)
    uni, _, uni_t = points_on_rays(rays, box, 300, torch.Generator().manual_seed(0))
    near, far = _outside_ball(world, pts, times), _outside_ball(world, uni, uni_t)
    r = world.cfg.sphere_radius
    assert float((near < 0.25 * r).float().mean()) > 0.9, near.quantile(torch.tensor([0.5, 0.9]))
    assert float((far < 0.25 * r).float().mean()) < 0.3, far.quantile(torch.tensor([0.5, 0.9]))


def test_votes_match_a_static_surface_and_carve_empty_space():
    # white background, as D-NeRF's: the sphere's unlit side is darker than the black default's threshold
    static = load_synthetic("default", background=(1.0, 1.0, 1.0), **{**SPHERE, "speed": 0.0})
    from splat4d.data.ray_depths import _Images

    views = static.split("train")
    world = SyntheticWorld(synthetic_config("default", **{**SPHERE, "speed": 0.0}))
    surface, colors = world.sample_points(200, t=0.0, seed=1)
    centre = torch.as_tensor(world.object("sphere").center(0.0), dtype=torch.float32)
    empty = centre + torch.tensor([0.0, 0.0, 0.9])  # well above the ball: background from every side
    pts = torch.cat([surface.float(), empty[None]])
    cols = torch.cat([colors.float(), torch.tensor([[0.5, 0.5, 0.5]])])
    match, background, seen = votes(pts, cols, static, views, range(len(views)), _Images(static, views, 0.1))
    # a surface point is seen again with its colour wherever it faces the camera (about half the views)
    assert float((match[:-1] / seen[:-1]).median()) > 0.35 and bool((background[:-1] == 0).all())
    assert float(match[-1]) == 0.0 and float(background[-1]) == float(seen[-1]) >= 8


def test_no_rays_give_no_points(scene):
    blank = load_synthetic("default", **{**SPHERE, "objects": ()})
    rays = foreground_rays(blank)
    pts, _, _ = consistent_points_on_rays(rays, blank, blank.bounds, 10, torch.Generator().manual_seed(0))
    assert pts.shape == (0, 3)


def test_static_points_are_the_ones_every_time_agrees_with():
    def points_and_scene(speed):
        kw = {**SPHERE, "speed": speed}
        pts, colors = SyntheticWorld(synthetic_config("default", **kw)).sample_points(100, t=0.5, seed=2)
        return pts, colors, load_synthetic("default", background=(1.0, 1.0, 1.0), **kw)

    moving = static_points(*points_and_scene(1.5))  # where the ball is only around t = 0.5
    fixed = static_points(*points_and_scene(0.0))
    assert float(moving.float().mean()) < 0.1 and float(fixed.float().mean()) > 0.5


GROUND = dict(objects=("ground",), num_cameras=8, num_frames=2, width=48, height=48, elevations_deg=(20.0, 45.0))


def test_photo_cost_finds_a_checkered_floor_that_votes_do_not():
    floor = load_synthetic("default", **GROUND)  # the checkered disc at z = -0.5, eight cameras at once
    rays = foreground_rays(floor)
    box = torch.tensor([[-2.0, -2.0, -1.5], [2.0, 2.0, 1.0]])
    near = {}
    for choose in ("votes", "cost", "votes_cost", "decisive"):
        pts, _, _ = consistent_points_on_rays(rays, floor, box, 400, torch.Generator().manual_seed(0), samples=64,
                                              choose=choose)
        near[choose] = float(((pts[:, 2] + 0.5).abs() < 0.05).float().mean())
    # two colours: many wrong depths land on the ray's colour within a pixel in every view and tie
    for choose in ("cost", "votes_cost"):
        assert near[choose] > 0.7 and near[choose] > near["votes"] + 0.2, near
    assert near["decisive"] > near["votes"] + 0.2, near  # by cost where it is decisive: the checker's edges


def test_photo_cost_is_low_on_the_surface_and_the_cap_where_unseen():
    static = load_synthetic("default", background=(1.0, 1.0, 1.0), **{**SPHERE, "speed": 0.0})
    views = static.split("train")
    world = SyntheticWorld(synthetic_config("default", **{**SPHERE, "speed": 0.0}))
    surface, colors = world.sample_points(200, t=0.0, seed=1)
    images = _Images(static, views, 0.1)
    own = photo_cost(surface.float(), colors.float(), static, views, range(len(views)), images)
    off = photo_cost(surface.float() + torch.tensor([0.0, 0.0, 0.4]), colors.float(), static, views, range(len(views)),
                     images)
    far = photo_cost(torch.full((3, 3), 1e4), torch.rand(3, 3), static, views, range(len(views)), images)
    assert bool((own <= COST_CAP + 1e-6).all()) and torch.allclose(far, torch.full((3,), COST_CAP))
    # the views facing a point's far side see another part of the ball and cost about the cap either way
    assert float((own < off - 0.05).float().mean()) > 0.9, (own.median(), off.median())


def test_the_cost_is_decisive_where_one_depth_beats_every_rival():
    from splat4d.data.ray_depths import decisive_cost

    cost = torch.full((3, 20), 0.3)
    cost[0, 7] = 0.1  # one clear minimum
    cost[1, 7], cost[1, 15] = 0.1, 0.12  # a rival far along the ray nearly as cheap
    cost[2, 7], cost[2, 9] = 0.1, 0.11  # a near neighbour of the minimum is no rival
    assert decisive_cost(cost, strata=4, gap=0.05).tolist() == [True, False, True]


def test_an_unknown_choice_is_refused(scene):
    with pytest.raises(ValueError, match="choose"):
        consistent_points_on_rays(foreground_rays(scene), scene, scene.bounds, 5, torch.Generator(), choose="best")
