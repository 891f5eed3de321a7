"""Space carving (4K4D): the hull of a synthetic sphere of known shape contains its surface and lies within
about a voxel of it; bad input (one camera per frame, no masks, empty hull) gets one-line errors; the CLI
writes one PLY per frame atomically."""

from __future__ import annotations

import json

import pytest
import torch

from splat4d.cli import main
from splat4d.data.synthetic import SyntheticWorld, load_synthetic, synthetic_config
from splat4d.errors import DatasetError
from splat4d.methods.fourk4d.carve import CarveConfig, carve_frame, carve_scene, frame_masks, frames_of

SPHERE = dict(objects=("sphere",), num_cameras=30, num_frames=2, width=128, height=128,
              elevations_deg=(-50.0, -20.0, 10.0, 40.0, 70.0), test_cameras=(0,), speed=0.3)


@pytest.fixture(scope="module")
def sphere_scene():
    return load_synthetic("default", **SPHERE)


def _nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each point of a [N, 3] to the nearest of b [M, 3]."""
    return torch.cdist(a, b).min(dim=1).values


def test_hull_contains_the_sphere_and_lies_within_a_voxel_or_two(sphere_scene):
    cfg = CarveConfig(coarse_resolution=16, refine=3, points=4000)  # a voxel about a pixel wide
    frames = frames_of(sphere_scene, "train", cfg.min_cameras)
    views = frames[0]
    from splat4d.cameras import Cameras

    cams = Cameras.cat([sphere_scene.camera(v) for v in views])
    hull = carve_frame(cams, frame_masks(sphere_scene, views), sphere_scene.bounds, cfg)
    world = SyntheticWorld(synthetic_config("default", **SPHERE))
    surface, _ = world.sample_points(2000, t=float(views[0].time))
    # contains: every true surface point lies in a kept voxel (within half a voxel diagonal of a centre)
    d_in = _nearest(surface, hull.voxels)
    assert float(d_in.max()) <= hull.voxel_size * 0.87, (float(d_in.max()), hull.voxel_size)
    # tight: the hull's surface voxels lie within about two voxels of the true surface (the conservative
    # test keeps a voxel whose bounding sphere reaches the silhouette: up to ~0.9 voxel + a pixel outside)
    d_out = _nearest(hull.voxels[hull.surface], surface)
    assert float(d_out.quantile(0.99)) <= 2.0 * hull.voxel_size, (float(d_out.quantile(0.99)), hull.voxel_size)
    assert float(d_out.max()) <= 3.0 * hull.voxel_size, (float(d_out.max()), hull.voxel_size)
    assert hull.points.shape == (4000, 3)
    assert hull.surface.any() and not hull.surface.all()  # a solid ball has an inside


def test_cameras_that_disagree_are_outvoted_only_below_min_fraction(sphere_scene):
    from splat4d.cameras import Cameras

    views = frames_of(sphere_scene, "train", 3)[0]
    cams = Cameras.cat([sphere_scene.camera(v) for v in views])
    masks = frame_masks(sphere_scene, views)
    masks[:3] = False  # three of 29 cameras see nothing: at 0.95 (28 of 29) every voxel is carved away
    cfg = CarveConfig(coarse_resolution=16, refine=1, min_neighbors=0, points=100)
    with pytest.raises(DatasetError, match="empty visual hull"):
        carve_frame(cams, masks, sphere_scene.bounds, cfg)
    lenient = carve_frame(cams, masks, sphere_scene.bounds, CarveConfig(coarse_resolution=16, refine=1,
                                                                         min_neighbors=0, points=100, min_fraction=0.85))
    assert len(lenient.voxels) > 0


def test_one_camera_per_frame_is_refused():
    scene = load_synthetic("fast", num_frames=16, width=32, height=32)
    with pytest.raises(DatasetError, match="synchronized cameras"):
        frames_of(scene, "train", 3)


def test_views_without_masks_need_a_background(sphere_scene, monkeypatch):
    views = frames_of(sphere_scene, "train", 3)[0]
    monkeypatch.setattr(type(sphere_scene), "alpha", lambda self, v: None)
    with pytest.raises(DatasetError, match="no foreground mask"):
        frame_masks(sphere_scene, views)
    derived = frame_masks(sphere_scene, views, background=(0.0, 0.0, 0.0))
    assert derived.shape[0] == len(views) and derived.any()


def test_carve_command_writes_a_ply_per_frame(tmp_path, capsys):
    from splat4d.io.ply import load_points_ply

    out = tmp_path / "carved"
    rc = main(["carve", "synthetic:tiny", "-o", str(out), "--carve.coarse-resolution", "12", "--carve.refine", "2",
               "--carve.points", "300"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((out / "carve.json").read_text())
    assert [f["frame"] for f in meta["frames"]] == [0, 1, 2, 3]
    xyz, rgb = load_points_ply(out / "000002.ply")
    assert xyz.shape == (300, 3) and rgb is not None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_carve_command_bad_input_is_one_line(tmp_path, capsys):
    out = tmp_path / "carved"
    rc = main(["carve", "synthetic:fast", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "synchronized cameras" in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())
    rc = main(["carve", "synthetic:tiny", "-o", str(out), "--carve.min-fraction", "0"])
    assert rc == 2 and "min_fraction" in capsys.readouterr().err
