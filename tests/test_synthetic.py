"""The procedural scene: sizes, exact geometry (projection, depth), static ground, motion, determinism."""

import math
import time

import numpy as np
import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.data.synthetic import (
    OBJECT_IDS,
    PRESETS,
    SyntheticWorld,
    load_synthetic,
    synthetic_config,
)
from splat4d.errors import ConfigError, DatasetError


def _views(scene):
    return scene.split("train") + scene.split("test")


def test_tiny_builds_fast_with_expected_counts():
    t0 = time.perf_counter()
    scene = load_synthetic("tiny")
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"tiny synthetic scene took {elapsed:.2f} s"

    cfg = PRESETS["tiny"]
    C, F = cfg.num_cameras, cfg.num_frames
    assert scene.format == "synthetic" and scene.name == "tiny"
    assert scene.num_cameras == C and scene.num_frames == F
    assert scene.resolution == (cfg.width, cfg.height)
    assert scene.time_range == (0.0, 1.0)
    assert len(scene.split("test")) == len(cfg.test_cameras) * F
    assert len(scene.split("train")) == (C - len(cfg.test_cameras)) * F
    assert {v.cam_id for v in scene.split("test")} == set(cfg.test_cameras)
    assert sorted((v.cam_id, v.frame_id) for v in _views(scene)) == [(c, f) for c in range(C) for f in range(F)]
    assert scene.up == (0.0, 0.0, 1.0)
    assert scene.points.shape == (cfg.num_points, 3) and scene.point_colors.shape == (cfg.num_points, 3)
    assert 0 <= scene.point_colors.min() and scene.point_colors.max() <= 1
    lo, hi = scene.bounds
    assert ((scene.points >= lo) & (scene.points <= hi)).all()


def test_image_mask_depth_agree_and_background_composites():
    scene = load_synthetic("tiny", background=(1.0, 1.0, 1.0))
    for view in _views(scene)[:5]:
        rgba = view.image.read()
        assert rgba.dtype == np.uint8 and rgba.shape == (32, 32, 4)
        assert set(np.unique(rgba[..., 3])) <= {0, 255}
        alpha = scene.alpha(view).numpy()
        np.testing.assert_array_equal(alpha, rgba[..., 3] / 255.0)  # mask = any surface hit
        assert view.depth.dtype == np.float32 and view.depth.shape == (32, 32)
        np.testing.assert_array_equal(view.depth > 0, alpha > 0)  # depth 0 exactly where nothing is hit
        img = scene.image(view).numpy()
        assert np.all(img[alpha == 0] == 1.0)  # composited on the white background
        assert 0 < alpha.mean() < 1


def test_sphere_centre_projects_to_its_silhouette_and_depth_is_exact():
    cfg_kw = dict(objects=("sphere",), width=96, height=96)
    scene = load_synthetic("tiny", **cfg_kw)
    world = SyntheticWorld(synthetic_config("tiny", **cfg_kw))
    sphere = world.object("sphere")
    radius = float(np.linalg.norm(sphere.frame(0.0)[1], 2))
    for view in _views(scene)[::3]:
        cam = scene.camera(view)
        c = torch.tensor(sphere.center(view.time), dtype=torch.float32)
        uv, z = cam.project(c[None])
        mask = scene.alpha(view).numpy() > 0
        ys, xs = np.nonzero(mask)
        centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])  # pixel centres sit at +0.5
        assert np.abs(centroid - uv[0, 0].numpy()).max() < 0.75

        # At the pixel holding the centre's projection the hit is (distance - radius) along its ray
        # (up to the sphere's sag within half a pixel, < 1e-3 here); depth is z = s * cos(ray, axis).
        px, py = (int(math.floor(float(v))) for v in uv[0, 0])
        eye, dirs = (r[0, py, px].double() for r in cam.to(dtype=torch.float64).pixel_rays())
        s = float(view.depth[py, px]) / float(dirs @ cam.viewmats[0, 2, :3].double())
        assert abs(s - (float((c.double() - eye).norm()) - radius)) < 1e-3

        # Every sphere pixel unprojects (pixel centre, depth) onto the sphere surface.
        pix = torch.tensor(np.stack([xs + 0.5, ys + 0.5], 1), dtype=torch.float64)[None]
        dep = torch.tensor(view.depth[ys, xs], dtype=torch.float64)[None]
        pts = cam.to(dtype=torch.float64).unproject(pix, dep)[0]
        dist = (pts - c.double()).norm(dim=-1)
        assert (dist - radius).abs().max() < 1e-4


def test_ground_and_ellipsoid_pixels_lie_on_their_surfaces():
    world = SyntheticWorld(synthetic_config("tiny", width=64, height=64))
    cams = world.cameras().to(dtype=torch.float64)
    t = 0.6
    out = world.render(cams, t)
    ell = world.object("ellipsoid")
    c, A = (torch.tensor(v) for v in ell.frame(t))
    for i in range(len(cams)):
        for name, check in (
            ("ground", lambda p: (p[:, 2] + 0.5).abs()),
            ("ellipsoid", lambda p: ((p - c) @ torch.linalg.inv(A).T).norm(dim=-1) - 1),
        ):
            ys, xs = torch.nonzero(out["object_id"][i] == OBJECT_IDS[name], as_tuple=True)
            assert len(ys) > 0
            pix = torch.stack([xs + 0.5, ys + 0.5], -1).double()[None]
            p = cams[i].unproject(pix, out["depth"][i, ys, xs].double()[None])[0]
            assert check(p).abs().max() < 1e-4, name


def test_culled_ray_casting_matches_brute_force():
    world = SyntheticWorld(synthetic_config("tiny", width=48, height=40))
    cams = world.cameras().to(dtype=torch.float64)
    o, d = cams.pixel_rays()
    for t in (0.0, 0.37, 1.0):
        s_all = torch.stack([obj.intersect(o.reshape(-1, 3), d.reshape(-1, 3), t) for obj in world.objects])
        s_ref, k_ref = s_all.min(0)
        s, k = world._nearest_hits(o[:, 0, 0], d.reshape(len(cams), -1, 3), t)
        hit = torch.isfinite(s_ref)
        assert torch.equal(hit, torch.isfinite(s))
        assert torch.equal(k_ref[hit], k[hit]) and torch.equal(s_ref[hit], s[hit])


def test_static_ground_is_identical_across_frames_and_movers_change():
    world = SyntheticWorld(PRESETS["tiny"])
    cams = world.cameras()
    a, b = world.render(cams, 0.0), world.render(cams, 1 / 3)  # frames 0 and 1
    ground = (a["object_id"] == OBJECT_IDS["ground"]) & (b["object_id"] == OBJECT_IDS["ground"])
    assert ground.sum() > 100
    assert torch.equal(a["rgb"][ground], b["rgb"][ground])
    assert torch.equal(a["depth"][ground], b["depth"][ground])
    sky = (a["object_id"] == -1) & (b["object_id"] == -1)
    assert (a["rgb"][sky] == 0).all() and (a["alpha"][sky] == 0).all()

    for name in ("sphere", "box", "ellipsoid"):
        ma, mb = a["object_id"] == OBJECT_IDS[name], b["object_id"] == OBJECT_IDS[name]
        assert ma.any() and mb.any(), name
        assert (ma != mb).sum() > 10, f"{name} did not move"
    movers = (a["object_id"] > 0) | (b["object_id"] > 0)
    assert (a["rgb"][movers] - b["rgb"][movers]).abs().mean() > 0.05

    # the ellipsoid deforms (its axes change), the sphere stays rigid
    e = world.object("ellipsoid")
    sv = lambda obj, t: np.linalg.svd(obj.frame(t)[1], compute_uv=False)  # noqa: E731
    assert not np.allclose(sv(e, 0.0), sv(e, 0.25), atol=1e-3)
    s = world.object("sphere")
    np.testing.assert_allclose(sv(s, 0.0), sv(s, 0.25), atol=1e-12)


def test_speed_zero_is_static():
    world = SyntheticWorld(synthetic_config("tiny", speed=0.0))
    cams = world.cameras()
    a, b = world.render(cams, 0.0), world.render(cams, 1.0)
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["depth"], b["depth"])


def test_deterministic_with_seed():
    s1, s2 = load_synthetic("tiny", seed=3), load_synthetic("tiny", seed=3)
    for v1, v2 in zip(_views(s1), _views(s2)):
        np.testing.assert_array_equal(v1.image.read(), v2.image.read())
        np.testing.assert_array_equal(v1.depth, v2.depth)
    assert torch.equal(s1.points, s2.points) and torch.equal(s1.point_colors, s2.point_colors)
    s3 = load_synthetic("tiny", seed=4)
    assert not torch.equal(s1.points, s3.points)
    assert any(not np.array_equal(a.image.read(), b.image.read()) for a, b in zip(_views(s1), _views(s3)))


def test_points_lie_on_surfaces_at_t0():
    world = SyntheticWorld(PRESETS["tiny"])
    xyz, rgb = world.sample_points(400, t=0.0)
    xyz = xyz.double()
    on = torch.zeros(len(xyz), dtype=torch.bool)
    for name in ("sphere", "ellipsoid"):
        c, A = (torch.tensor(v) for v in world.object(name).frame(0.0))
        on |= (((xyz - c) @ torch.linalg.inv(A).T).norm(dim=-1) - 1).abs() < 1e-5
    box = world.object("box")
    c, R = (torch.tensor(v) for v in box.pose(0.0))
    local = ((xyz - c) @ R).abs() / torch.tensor(box.half)
    on |= ((local.amax(-1) - 1).abs() < 1e-5)
    on |= (xyz[:, 2] + 0.5).abs() < 1e-6
    assert on.all()
    assert (xyz[:, 2] + 0.5).abs().lt(1e-6).sum() == 100  # a quarter on the ground


def test_scale_and_config_errors():
    scene = load_synthetic("tiny", scale=0.5)
    view = scene.split("train")[0]
    assert scene.resolution == (16, 16)
    assert scene.image(view).shape == (16, 16, 3)
    assert view.depth.shape == (32, 32)  # depth stays at full resolution
    with pytest.raises(DatasetError):
        load_synthetic("nope")
    with pytest.raises(ConfigError):
        load_synthetic("tiny", num_cams=3)
    with pytest.raises(ConfigError):
        load_synthetic("tiny", test_cameras=(0, 1, 2, 3))
    with pytest.raises(ConfigError):
        load_synthetic("tiny", objects=("teapot",))


def test_look_at_keeps_world_up_at_the_top_of_the_image():
    cam = Cameras.look_at([3.0, 0.0, 0.0], [0.0, 0.0, 0.0], up=(0.0, 0.0, 1.0), width=100, height=100)
    uv, z = cam.project(torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert uv[0, 0, 1] < 50  # up is at the top (image y points down)
    assert uv[0, 1, 0] > 50  # looking along -x with z up, +y is on the right
    assert torch.linalg.det(cam.viewmats[0, :3, :3]) > 0
