"""4K4D's background points: with masks of the subject only, the floor the images also show gets a static
point set on it (not on the subject), which every frame draws undisplaced; the alpha is trained towards
"differs from the background colour"; the set survives a state-dict round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from splat4d.data.scene import ArrayImage
from splat4d.data.synthetic import load_synthetic
from splat4d.methods.base import Batch, get_method
from splat4d.methods.fourk4d.background import background_points
from splat4d.methods.fourk4d.carve import CarveConfig

RIG = dict(num_cameras=8, num_frames=3, width=48, height=48, test_cameras=(0,), speed=0.3,
           elevations_deg=(20.0, 45.0))


@pytest.fixture(scope="module")
def scene():
    """Ground + sphere, masked like a capture whose masks hold the subject only: the sphere's."""
    full = load_synthetic("default", objects=("ground", "sphere"), background=(1.0, 1.0, 1.0), **RIG)
    alone = load_synthetic("default", objects=("sphere",), **RIG)
    for split, views in full.splits.items():
        for v, a in zip(views, alone.splits[split]):
            v.mask = ArrayImage(alone.alpha_uint8(a)[..., None].repeat(3, -1), "sphere mask")
    return full


def test_points_lie_on_the_ground_not_on_the_subject(scene):
    pts = background_points(scene, 300, torch.Generator().manual_seed(0))
    assert len(pts) >= 150
    off = (pts[:, 2] + 0.5).abs()  # SyntheticConfig: the ground disc lies at z = -0.5
    # single-pixel colour matches on a two-colour checker leave some points a cell's parallax off (uniform
    # depths in the search box: ~10 % within 0.1 of the ground)
    assert float((off < 0.1).float().mean()) > 0.45 and float(off.median()) < 0.1, off.quantile(torch.tensor([0.5, 0.9]))


def test_model_draws_them_in_every_frame_undisplaced(scene):
    cls = get_method("fourk4d")
    cfg = cls.Config(carve=CarveConfig(coarse_resolution=12, refine=2, points=400), grid_resolution=(8, 8, 8),
                     grid_dim=4, multires=(1,), hidden=16, background_points=200)
    model = cls.from_scene(scene, cfg, torch.Generator().manual_seed(0))
    assert model.cfg.hull_from == "masks" and len(model.background) > 0
    assert model.num_primitives == model.positions.shape[1] + len(model.background)
    n = model.positions.shape[1]
    spacing = model.background_spacing
    assert spacing.shape == (len(model.background),) and bool((spacing > 0).all())
    for f in range(model.positions.shape[0]):
        p = model.points_at(f)
        assert torch.equal(p["means"][n:], model.background)
        r = p["radii"][n:] / spacing  # sized by their spacing, not by the carving voxel
        assert bool((r >= 0.5 - 1e-6).all() and (r <= 2.0 + 1e-6).all())
    view = scene.split("train")[0]
    model.train()
    model.param_groups(10)
    out = model.render(scene.camera(view), view.time, torch.ones(3))
    batch = Batch(scene.camera(view), torch.tensor([view.time]), scene.image(view)[None], scene.alpha(view)[None],
                  torch.ones(3), torch.tensor([0]))
    # the ground counts as shown: the alpha target is 1 there although the mask is 0
    loss, _ = model.loss(batch, [out], 0)
    loss.backward()
    assert model.background.grad is not None and model.background.grad.abs().sum() > 0
    state = model.state_dict()
    other = cls.empty(dataclasses.replace(cfg), state)
    other.load_state_dict(state)
    assert torch.equal(other.background, model.background)


def test_background_points_have_their_own_attributes(scene):
    """Beyond the HexPlane's box every background point reads its border features; its own offsets of the
    radius and density logits and SH residual start at zero, get gradients and move only the background."""
    cls = get_method("fourk4d")
    cfg = cls.Config(carve=CarveConfig(coarse_resolution=12, refine=2, points=300), grid_resolution=(8, 8, 8),
                     grid_dim=4, multires=(1,), hidden=16, background_points=150, lr_background=5e-3)
    model = cls.from_scene(scene, cfg, torch.Generator().manual_seed(0))
    m, n = len(model.background), model.positions.shape[1]
    assert model.background_attrs.shape == (m, 2 + 3 * 16) and not bool(model.background_attrs.any())
    names = [g.name for g in model.param_groups(10)]
    assert "background_attrs" in names
    off = cls.from_scene(scene, dataclasses.replace(cfg, lr_background=0.0), torch.Generator().manual_seed(0))
    assert "background_attrs" not in [g.name for g in off.param_groups(10)]

    view = scene.split("train")[0]
    model.train()
    out = model.render(scene.camera(view), view.time, torch.ones(3))
    batch = Batch(scene.camera(view), torch.tensor([view.time]), scene.image(view)[None], scene.alpha(view)[None],
                  torch.ones(3), torch.tensor([0]))
    model.loss(batch, [out], 0)[0].backward()
    grad = model.background_attrs.grad
    assert grad is not None and bool(grad[:, 0].abs().sum() > 0) and bool(grad[:, 2:].abs().sum() > 0)

    before = model.points_at(0)
    with torch.no_grad():
        model.background_attrs.uniform_(-1.0, 1.0)
    after = model.points_at(0)
    for key in ("radii", "densities", "sh"):
        assert torch.equal(after[key][:n], before[key][:n])  # the subject's points keep the networks' values
        assert not torch.allclose(after[key][n:], before[key][n:])

    state = model.state_dict()  # a run saved before the attributes existed loads with zeros
    old = {k: v for k, v in state.items() if k != "background_attrs"}
    other = cls.empty(dataclasses.replace(cfg), old)
    other.load_state_dict(old)
    assert not bool(other.background_attrs.any())
    other.load_state_dict(state)
    assert torch.equal(other.background_attrs, model.background_attrs)


def test_masks_that_hold_everything_leave_no_background_points():
    plain = load_synthetic("default", objects=("ground", "sphere"), **RIG)  # masks: every surface hit
    assert background_points(plain, 100, torch.Generator().manual_seed(0)).shape == (0, 3)


def test_plane_normals_on_a_floor_and_none_in_a_blob():
    from splat4d.methods.fourk4d.background import plane_normals

    g = torch.Generator().manual_seed(0)
    floor = torch.rand(1500, 3, generator=g)
    floor[:, 2] = 0.003 * torch.randn(1500, generator=g)
    n = plane_normals(floor)
    assert float((n[:, 2].abs() > 0.98).float().mean()) > 0.95
    blob = torch.randn(1500, 3, generator=g)
    assert float((plane_normals(blob).norm(dim=1) > 0).float().mean()) < 0.05


def test_dominant_plane_moves_near_and_hidden_points_onto_the_floor():
    from splat4d.methods.fourk4d.background import background_shape, dominant_plane

    g = torch.Generator().manual_seed(0)
    floor = torch.rand(800, 3, generator=g) * 2 - 1
    floor[:, 2] = 0.2 + 0.005 * torch.randn(800, generator=g)  # a floor at z = 0.2
    near = floor[:100] + torch.tensor([0.0, 0.0, 0.1])  # depth errors either side of it
    below = floor[100:200] - torch.tensor([0.0, 0.0, 0.5])
    wall = torch.rand(300, 3, generator=g) * 2 - 1
    wall[:, 0] = 0.9  # a wall, well above the floor's band where it rises
    wall[:, 2] = wall[:, 2].abs() + 0.6
    pts = torch.cat([floor, near, below, wall])
    normal, offset = dominant_plane(pts, 0.02, torch.Generator().manual_seed(1))
    assert abs(float(normal[2])) > 0.999 and abs(float(offset / normal[2]) - 0.2) < 0.01
    bounds = torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 1.5]])
    eyes = torch.tensor([[0.0, -3.0, 2.0], [3.0, 0.0, 1.0]])
    moved, normals = background_shape(pts, bounds, eyes, discs=False, plane=True, generator=torch.Generator().manual_seed(1))
    on = slice(0, 1000)
    assert bool(((moved[on, 2] - 0.2).abs() < 0.01).all())  # the floor, the near and the hidden points on it
    assert torch.allclose(moved[1000:], wall) and not bool(normals[1000:].any())  # the wall stays, round
    assert bool((normals[on, 2].abs() > 0.999).all())
    assert background_shape(pts, bounds, eyes, False, False, torch.Generator())[1].abs().sum() == 0
    blob = torch.randn(500, 3, generator=g)
    assert dominant_plane(blob, 0.02, torch.Generator().manual_seed(1)) is None  # no floor: nothing moves
    around = torch.cat([eyes, torch.tensor([[0.0, 3.0, -2.0]])])  # a camera under it: the plane is no floor
    assert torch.equal(background_shape(pts, bounds, around, False, True, torch.Generator().manual_seed(1))[0], pts)


def test_a_background_of_discs_bakes_and_renders_like_the_trained_model(scene):
    from splat4d.methods.fourk4d.baked import bake

    cls = get_method("fourk4d")
    cfg = cls.Config(carve=CarveConfig(coarse_resolution=12, refine=2, points=300), grid_resolution=(8, 8, 8),
                     grid_dim=4, multires=(1,), hidden=16, background_points=200, background_discs=True,
                     background_plane=True)
    model = cls.from_scene(scene, cfg, torch.Generator().manual_seed(0))
    n = model.positions.shape[1]
    flat = model.background_normals.norm(dim=1) > 0  # 48-pixel views: the points scatter about the ground
    assert float(flat.float().mean()) > 0.3
    assert float((model.background_normals[flat, 2].abs() > 0.9).float().mean()) > 0.7, model.background_normals[flat]
    p = model.points_at(0)
    assert p["normals"].shape == p["means"].shape and not bool(p["normals"][:n].any())
    state = model.state_dict()
    other = cls.empty(dataclasses.replace(cfg), state)
    other.load_state_dict(state)
    assert torch.equal(other.background_normals, model.background_normals)
    model.eval()
    baked = bake(model, "fp16")
    assert torch.equal(baked.disc_normals, p["normals"])
    view = scene.split("test")[0]
    with torch.no_grad():
        a = model.render(scene.camera(view), view.time, torch.zeros(3)).rgb
        b = baked.render(scene.camera(view), view.time, torch.zeros(3)).rgb
        round_ = other.render(scene.camera(view), view.time, torch.zeros(3)).rgb
    assert float((a - b).abs().max()) <= 1e-3
    with torch.no_grad():
        other.background_normals.zero_()
        assert not torch.equal(other.render(scene.camera(view), view.time, torch.zeros(3)).rgb, round_)
