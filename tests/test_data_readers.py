"""Dataset readers on tiny datasets written in each format from known cameras."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from data_builders import (
    H,
    W,
    flat_colour,
    image,
    known_cameras,
    projected,
    save_ply,
    save_png,
    write_dnerf,
    write_hypernerf,
    write_neu3d,
)

from splat4d.data import (
    READERS,
    check_scene,
    detect_format,
    dnerf,
    easyvolcap,
    hypernerf,
    load_scene,
    neu3d,
    parse_background,
)
from splat4d.data.scene import ArrayImage, DynamicScene, View

POINT = torch.tensor([0.3, -0.2, 0.1])


# ---------------------------------------------------------------------------- D-NeRF
def _hand_dnerf(root, **frame_extra):
    """One OpenGL camera at (0, 0, 5) looking down -z, f = 10, 8x6: point (1, 0.5, 1) -> pixel (6.5, 1.75)."""
    c2w = np.eye(4)
    c2w[2, 3] = 5.0
    fr = {"file_path": "./train/r_0", "transform_matrix": c2w.tolist(), "time": 0.0, **frame_extra}
    save_png(root / "train" / "r_0.png", image(0))
    meta = {"camera_angle_x": 2 * math.atan(0.4), "frames": [fr]}  # 0.5 * 8 / tan(angle / 2) = 10
    (root / "transforms_train.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("extra", [{}, {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6}])
def test_dnerf_hand_computed_projection(tmp_path, extra):
    _hand_dnerf(tmp_path, **extra)
    scene = dnerf.load(tmp_path)
    uv, z = scene.camera(scene.splits["train"][0]).project(torch.tensor([[1.0, 0.5, 1.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([6.5, 1.75]), atol=1e-5)
    assert float(z[0, 0]) == pytest.approx(4.0)
    assert scene.resolution == (8, 6)
    assert scene.up == (0.0, 0.0, 1.0)
    assert scene.splits["val"] == [] and scene.splits["test"] == []


def test_dnerf_round_trip_cameras_times_and_splits(tmp_path):
    cams = known_cameras(3)
    splits = {"train": [(0, 0.0), (1, 0.5), (2, 1.0), (0, 0.25)], "val": [(1, 0.75)], "test": [(2, 0.5)]}
    written = write_dnerf(tmp_path, cams, splits)
    save_ply(tmp_path / "fused.ply", np.array([[-1, -2, -3], [1, 2, 3.0]]), np.array([[255, 0, 0], [0, 255, 0]]))
    scene = load_scene(tmp_path)
    assert scene.format == "dnerf" and detect_format(tmp_path) == "dnerf"
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 4, "val": 1, "test": 1}
    assert scene.num_cameras == 3 and scene.num_frames == 5  # times 0, .25, .5, .75, 1
    for split, pairs in splits.items():
        for view, (c, t) in zip(scene.splits[split], pairs):
            assert torch.allclose(view.camera.viewmats[0], cams.viewmats[c], atol=1e-5)
            assert torch.allclose(view.camera.Ks[0], cams.Ks[c], atol=1e-5)
            assert torch.allclose(projected(view.camera, POINT), projected(cams[c], POINT), atol=1e-4)
            assert view.time == t and view.frame_id == round(t * 4)
    assert [v.cam_id for v in scene.splits["train"]] == [0, 1, 2, 0]
    img = scene.image(scene.splits["val"][0])
    assert torch.equal(img, torch.from_numpy(written[("val", 0)].astype(np.float32) / 255))
    assert torch.equal(scene.bounds, torch.tensor([[-1.0, -2, -3], [1, 2, 3]]))
    assert torch.allclose(scene.point_colors, torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    assert check_scene(scene) == []


def test_dnerf_camera_angle_and_scale(tmp_path):
    cams = known_cameras(2)
    write_dnerf(tmp_path, cams, {"train": [(0, 0.0), (1, 1.0)]}, intrinsics="angle")
    scene = load_scene(tmp_path, scale=0.5)
    cam = scene.camera(scene.splits["train"][1])
    assert (cam.width, cam.height) == (4, 3) and scene.resolution == (4, 3)
    assert torch.allclose(cam.Ks[0], cams.Ks[1] * torch.tensor([[0.5], [0.5], [1.0]]), atol=1e-5)
    assert scene.image(scene.splits["train"][0]).shape == (3, 4, 3)
    # no points: a cube around the place both cameras look at (known_cameras look at (0.1, -0.2, 0.3))
    centre = scene.bounds.mean(0)
    torch.testing.assert_close(centre, torch.tensor([0.1, -0.2, 0.3]), atol=1e-4, rtol=0)
    half = scene.bounds[1] - centre
    assert torch.allclose(half, half[0].expand(3)) and 0.5 < float(half[0]) < 4.0


def test_bounds_without_points_follow_the_rig():
    from splat4d.data.common import bounds_from

    # inward-facing: the cube's half-width is the view's half-width at the focus distance
    cams = known_cameras(3, fov_deg=60.0)
    c2w = torch.linalg.inv(cams.viewmats)
    tan = torch.full((3,), math.tan(math.radians(30.0)))
    box = bounds_from(None, c2w[:, :3, 3], c2w[:, :3, 2], tan)
    focus = torch.tensor([0.1, -0.2, 0.3])
    dist = (c2w[:, :3, 3] - focus).norm(dim=-1).median()
    torch.testing.assert_close(box, torch.stack([focus - dist * tan[0], focus + dist * tan[0]]), atol=1e-4, rtol=0)
    # forward-facing (parallel axes) and with points: the old boxes
    centres = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]])
    fwd = torch.tensor([[0.0, 0, 1]]).repeat(3, 1)
    assert torch.equal(bounds_from(None, centres, fwd, tan), torch.stack([centres.min(0).values, centres.max(0).values]))
    pts = torch.tensor([[5.0, 5, 5], [6.0, 7, 8]])
    assert torch.equal(bounds_from(pts, centres, fwd, tan), pts)


def test_dnerf_rgba_composited_on_background(tmp_path):
    cams = known_cameras(1)
    written = write_dnerf(tmp_path, cams, {"train": [(0, 0.0)]}, channels=4)
    rgba = written[("train", 0)].astype(np.float32) / 255
    for bg, col in (("white", 1.0), ("black", 0.0), ("0,0,255", None)):
        scene = load_scene(tmp_path, background=bg)
        img = scene.image(scene.splits["train"][0]).numpy()
        bgc = np.array([col] * 3 if col is not None else [0.0, 0.0, 1.0], dtype=np.float32)
        expect = rgba[..., :3] * rgba[..., 3:] + bgc * (1 - rgba[..., 3:])
        np.testing.assert_allclose(img, expect, atol=1e-6)
        assert torch.allclose(scene.alpha(scene.splits["train"][0]), torch.from_numpy(rgba[..., 3]))


def test_dnerf_ascii_ply_and_missing_times(tmp_path):
    cams = known_cameras(2)
    write_dnerf(tmp_path, cams, {"train": [(0, 0.0), (1, 0.0), (0, 0.0)]})
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    for fr in meta["frames"]:
        del fr["time"]
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    save_ply(tmp_path / "points3d.ply", np.array([[0, 0, 0], [1, 1, 1.0]]), text=True)
    scene = load_scene(tmp_path)
    assert [v.time for v in scene.splits["train"]] == [0.0, 0.5, 1.0]
    assert scene.points.shape == (2, 3) and scene.point_colors is None


# ----------------------------------------------------------------------------- Neu3D
def test_neu3d_hand_computed_llff(tmp_path):
    """LLFF row (down, right, back | t | hwf) for an OpenGL camera at (0, 0, 5) with identity rotation."""
    block = np.array([[0, 1, 0, 0, 6], [-1, 0, 0, 0, 8], [0, 0, 1, 5, 10]], dtype=np.float64)
    np.save(tmp_path / "poses_bounds.npy", np.concatenate([block.ravel(), [0.1, 20.0]])[None])
    save_png(tmp_path / "cam00" / "0000.png", image(0))
    scene = neu3d.load(tmp_path)
    uv, z = scene.camera(scene.splits["test"][0]).project(torch.tensor([[1.0, 0.5, 1.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([6.5, 1.75]), atol=1e-5) and float(z[0, 0]) == pytest.approx(4)
    assert torch.allclose(scene.near_far, torch.tensor([[0.1, 20.0]]))


@pytest.mark.parametrize("mode", ["frames", "flat"])
def test_neu3d_extracted_frames(tmp_path, mode):
    cams = known_cameras(3)
    write_neu3d(tmp_path, cams, num_frames=4, mode=mode)
    scene = load_scene(tmp_path)
    assert scene.format == "neu3d"
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 8, "val": 0, "test": 4}
    assert scene.num_cameras == 3 and scene.num_frames == 4
    assert {v.cam_id for v in scene.splits["test"]} == {0}
    assert [v.time for v in scene.splits["test"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    for v in scene.splits["train"]:
        assert torch.allclose(projected(v.camera, POINT), projected(cams[v.cam_id], POINT), atol=1e-4)
    v = scene.splits["train"][5]  # camera 2, frame 1
    assert (v.cam_id, v.frame_id) == (2, 1)
    assert torch.allclose(scene.image(v)[0, 0], torch.from_numpy(flat_colour(2, 1) / 255).float())
    assert check_scene(scene) == []


def test_neu3d_videos_scaled(tmp_path):
    cams = known_cameras(2, width=16, height=12)
    write_neu3d(tmp_path, cams, num_frames=3, mode="video")
    scene = load_scene(tmp_path, scale=0.5)
    assert scene.resolution == (8, 6) and scene.num_frames == 3
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 3, "val": 0, "test": 3}
    v = scene.splits["train"][2]
    assert (v.cam_id, v.frame_id, v.time) == (1, 2, 1.0)
    assert torch.allclose(scene.camera(v).Ks[0], cams.Ks[1] * torch.tensor([[0.5], [0.5], [1.0]]), atol=1e-5)
    img = scene.image(v)
    assert img.shape == (6, 8, 3)
    expect = torch.from_numpy(flat_colour(1, 2) / 255).float()
    assert (img - expect).abs().max() < 8 / 255  # h264 + yuv420 round trip of a flat colour
    assert check_scene(scene) == []


# ------------------------------------------------------------------------- HyperNeRF
def test_hypernerf_hand_computed(tmp_path):
    """orientation I, position (1, 0, -8), scene scale .5 / centre (1, 0, 0): point (2, .5, 0) -> (6, 5)."""
    (tmp_path / "camera").mkdir()
    cam = {"orientation": np.eye(3).tolist(), "position": [1.0, 0.0, -8.0], "focal_length": 16.0,
           "principal_point": [4.0, 3.0], "image_size": [8, 6], "pixel_aspect_ratio": 2.0, "skew": 0.0,
           "radial_distortion": [0, 0, 0], "tangential_distortion": [0, 0]}
    (tmp_path / "camera" / "a.json").write_text(json.dumps(cam))
    save_png(tmp_path / "rgb" / "1x" / "a.png", image(0))
    (tmp_path / "dataset.json").write_text(json.dumps({"ids": ["a"], "train_ids": ["a"], "val_ids": []}))
    (tmp_path / "metadata.json").write_text(json.dumps({"a": {"warp_id": 0, "camera_id": 0, "appearance_id": 0}}))
    (tmp_path / "scene.json").write_text(json.dumps({"scale": 0.5, "center": [1, 0, 0], "near": 0.1, "far": 5}))
    np.save(tmp_path / "points.npy", np.array([[2.0, 0.5, 0.0]]))
    scene = hypernerf.load(tmp_path)
    assert torch.allclose(scene.points, torch.tensor([[0.5, 0.25, 0.0]]))
    uv, z = scene.camera(scene.splits["train"][0]).project(scene.points)
    assert torch.allclose(uv[0, 0], torch.tensor([6.0, 5.0]), atol=1e-5) and float(z[0, 0]) == pytest.approx(4)


def test_hypernerf_splits_times_and_scale_folders(tmp_path):
    cams = known_cameras(2)
    write_hypernerf(tmp_path, cams, warp_ids=[0, 1, 2, 3, 4], train=[0, 2, 4], val=[1, 3])
    scene = load_scene(tmp_path)
    assert scene.format == "hypernerf"
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 3, "val": 0, "test": 2}
    assert [v.time for v in scene.splits["train"]] == [0.0, 0.5, 1.0]
    assert [v.time for v in scene.splits["test"]] == [0.25, 0.75]
    assert scene.num_frames == 5 and scene.num_cameras == 2
    for v, i in zip(scene.splits["train"] + scene.splits["test"], [0, 2, 4, 1, 3]):
        assert torch.allclose(projected(v.camera, POINT), projected(cams[i % 2], POINT), atol=1e-4)
    assert scene.up == (0.0, 0.0, 1.0)  # cameras are levelled with +z up
    assert torch.allclose(scene.image(scene.splits["train"][1]), torch.from_numpy(image(2) / 255).float())

    half = load_scene(tmp_path, scale=0.5)  # served from rgb/2x without resizing
    v = half.splits["test"][0]
    assert half.resolution == (4, 3) and half.scale == 1.0
    assert torch.allclose(half.camera(v).Ks[0], cams.Ks[1] * torch.tensor([[0.5], [0.5], [1.0]]), atol=1e-5)
    assert torch.equal(half.image(v), torch.from_numpy(image(1, 3, 4, 3) / 255).float())

    quarter = load_scene(tmp_path, scale=0.25)  # no rgb/4x: rgb/2x resized by 0.5
    assert quarter.resolution == (2, 2) and quarter.scale == 0.5
    assert quarter.image(quarter.splits["train"][0]).shape == (2, 2, 3)


# ------------------------------------------------------------------------ EasyVolcap
_INTRI = """%YAML:1.0
---
names:
   - "00"
   - "01"
K_00: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 10., 0., 4., 0., 10., 3., 0., 0., 1. ]
H_00: 6
W_00: 8
D_00: !!opencv-matrix
   rows: 1
   cols: 5
   dt: d
   data: [ 0., 0., 0., 0., 0. ]
K_01: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 10., 0., 4., 0., 10., 3., 0., 0., 1. ]
H_01: 6
W_01: 8
"""
# camera 00: identity at the origin; camera 01: rotated 90 degrees about y (Rodrigues), T = (0, 0, 4)
_EXTRI = """%YAML:1.0
---
names:
   - "00"
   - "01"
Rot_00: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 1., 0., 0., 0., 1., 0., 0., 0., 1. ]
T_00: !!opencv-matrix
   rows: 3
   cols: 1
   dt: d
   data: [ 0., 0., 0. ]
R_01: !!opencv-matrix
   rows: 3
   cols: 1
   dt: d
   data: [ 0., 1.5707963267948966, 0. ]
T_01: !!opencv-matrix
   rows: 3
   cols: 1
   dt: d
   data: [ 0., 0., 4. ]
"""


def _hand_easyvolcap(root, frames=3):
    (root / "intri.yml").write_text(_INTRI)
    (root / "extri.yml").write_text(_EXTRI)
    for c in ("00", "01"):
        for f in range(frames):
            ext = "png" if c == "00" else "jpg"
            save_png(root / "images" / c / f"{f:06d}.{ext}", image(10 * int(c) + f))
            save_png(root / "masks" / c / f"{f:06d}.png", np.full((H, W, 1), 255 * (f % 2), np.uint8))


def test_easyvolcap_hand_written_yaml(tmp_path):
    _hand_easyvolcap(tmp_path)
    scene = load_scene(tmp_path)
    assert scene.format == "easyvolcap"
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 3, "val": 0, "test": 3}
    assert {v.cam_id for v in scene.splits["test"]} == {1}  # the last camera is the test camera
    assert [v.time for v in scene.splits["train"]] == [0.0, 0.5, 1.0]
    X = torch.tensor([[1.0, 0.5, 4.0]])
    uv0, _ = scene.camera(scene.splits["train"][0]).project(X)
    assert torch.allclose(uv0[0, 0], torch.tensor([6.5, 4.25]), atol=1e-5)
    # R_y(90deg) maps (1, .5, 4) to (4, .5, -1); + T -> (4, .5, 3): pixel (10 * 4 / 3 + 4, 10 * .5 / 3 + 3)
    uv1, z1 = scene.camera(scene.splits["test"][0]).project(X)
    assert torch.allclose(uv1[0, 0], torch.tensor([40 / 3 + 4, 5 / 3 + 3]), atol=1e-4) and float(z1[0, 0]) == pytest.approx(3)
    assert torch.equal(scene.alpha(scene.splits["test"][1]), torch.ones(H, W))
    assert torch.equal(scene.alpha(scene.splits["test"][2]), torch.zeros(H, W))
    swapped = load_scene(tmp_path, test_cams=["00"])
    assert {v.cam_id for v in swapped.splits["test"]} == {0} and len(swapped.splits["train"]) == 3
    assert {v.cam_id for v in load_scene(tmp_path, test_cams=[1]).splits["test"]} == {1}


def _memory_scene() -> DynamicScene:
    cams = known_cameras(3)
    splits = {"train": [], "val": [], "test": []}
    for f in range(3):
        for c in range(3):
            rgba = image(100 + 10 * c + f, 4)
            depth = np.random.default_rng(c + f).uniform(1, 5, (H, W)).astype(np.float32)
            v = View(cams[c], time=f / 2, cam_id=c, frame_id=f, image=ArrayImage(rgba, f"c{c}f{f}"), depth=depth)
            splits["test" if c == 2 else "train"].append(v)
    return DynamicScene(
        "mem", "synthetic", splits, background=(1.0, 1.0, 1.0), points=torch.tensor([[0.0, 1, 2], [3, 4, 5]]),
        point_colors=torch.tensor([[1.0, 0, 0], [0, 0, 1]]), num_cameras=3, num_frames=3,
        bounds=torch.tensor([[-2.0] * 3, [2.0] * 3]), up=(0.0, 0.0, 1.0),
    )


def test_easyvolcap_writer_round_trip(tmp_path):
    src = _memory_scene()
    easyvolcap.write_easyvolcap(src, tmp_path / "ev")
    assert (tmp_path / "ev" / "intri.yml").read_text().startswith("%YAML:1.0")
    back = load_scene(tmp_path / "ev", background="white")
    assert back.format == "easyvolcap" and back.name == "mem"
    assert (back.num_cameras, back.num_frames) == (3, 3)
    assert torch.equal(back.bounds, src.bounds) and back.up == src.up
    assert torch.allclose(back.points, src.points)
    for split in ("train", "val", "test"):
        assert len(back.splits[split]) == len(src.splits[split])
        for a, b in zip(src.splits[split], back.splits[split]):
            assert torch.allclose(a.camera.viewmats, b.camera.viewmats, atol=1e-5)
            assert torch.allclose(a.camera.Ks, b.camera.Ks, atol=1e-5)
            assert (a.time, a.cam_id, a.frame_id) == (b.time, b.cam_id, b.frame_id)
            assert torch.equal(src.image(a), back.image(b))
            assert torch.equal(src.alpha(a), back.alpha(b))
            np.testing.assert_array_equal(a.depth, b.depth)
    assert check_scene(back) == []
    # the Rodrigues R_ entries agree with the exact Rot_ ones
    text = (tmp_path / "ev" / "extri.yml").read_text().replace("Rot_", "Unused_")
    (tmp_path / "ev" / "extri.yml").write_text(text)
    rod = load_scene(tmp_path / "ev")
    for a, b in zip(src.splits["train"], rod.splits["train"]):
        assert torch.allclose(a.camera.viewmats, b.camera.viewmats, atol=1e-5)


def test_easyvolcap_writer_of_a_scaled_dnerf_scene(tmp_path):
    cams = known_cameras(2)
    write_dnerf(tmp_path / "dn", cams, {"train": [(0, 0.0), (1, 0.5)], "test": [(0, 1.0)]}, channels=4)
    src = load_scene(tmp_path / "dn", scale=0.5)
    easyvolcap.write_easyvolcap(src, tmp_path / "ev")
    back = load_scene(tmp_path / "ev")
    assert back.resolution == (4, 3)
    for split in ("train", "test"):
        for a, b in zip(src.splits[split], back.splits[split]):
            assert torch.allclose(src.camera(a).Ks, back.camera(b).Ks, atol=1e-5)
            assert torch.equal(src.image(a), back.image(b)) and a.time == b.time


# ------------------------------------------------------------------- load_scene & co
def test_readers_registry_and_layout_lines():
    assert set(READERS) == {"dnerf", "neu3d", "hypernerf", "easyvolcap"}
    for name, mod in READERS.items():
        assert callable(mod.detect) and callable(mod.load) and mod.LAYOUT.startswith(name + ":")


@pytest.mark.parametrize(
    "value, expect",
    [
        ("white", (1.0, 1.0, 1.0)), ("black", (0.0, 0.0, 0.0)), (" White ", (1.0, 1.0, 1.0)),
        ("0.5,0.25,1", (0.5, 0.25, 1.0)), ("255,0,51", (1.0, 0.0, 0.2)), ("1,1,1", (1.0, 1.0, 1.0)),
        ("#ff0033", (1.0, 0.0, 0.2)), ((0.1, 0.2, 0.3), (0.1, 0.2, 0.3)), ((255, 128, 0), (1.0, 128 / 255, 0.0)),
    ],
)
def test_parse_background(value, expect):
    assert parse_background(value) == pytest.approx(expect)


def test_load_scene_accepts_a_file_inside_the_folder(tmp_path):
    write_dnerf(tmp_path, known_cameras(1), {"train": [(0, 0.0)]})
    assert load_scene(tmp_path / "transforms_train.json").format == "dnerf"
    assert load_scene(str(tmp_path), format="dnerf").num_cameras == 1


def test_load_scene_synthetic_is_delegated(monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("splat4d.data.synthetic")
    fake.load_synthetic = lambda name, scale, background, **kw: calls.append((name, scale, background)) or "scene"
    monkeypatch.setitem(sys.modules, "splat4d.data.synthetic", fake)
    assert load_scene("synthetic", scale=0.5, background="white") == "scene"
    assert load_scene("synthetic:orbit") == "scene"
    assert calls == [("default", 0.5, (1.0, 1.0, 1.0)), ("orbit", 1.0, (0.0, 0.0, 0.0))]
