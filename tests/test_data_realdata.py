"""The D-NeRF reader on the shared three-body-collision scene (skips when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from splat4d.data import load_scene

SCENE = Path(__file__).resolve().parents[1].parent / "shared/data/dnerf-scene3-collision"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not SCENE.is_dir(), reason=f"real data not present at {SCENE}"),
]


def test_dnerf_collision_scene():
    scene = load_scene(SCENE)
    assert scene.format == "dnerf"
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 105, "val": 22, "test": 23}
    assert scene.resolution == (800, 800)
    # 12 calibrated cameras: distinct poses and focal lengths (fl_x differs per camera)
    assert scene.num_cameras == 12
    assert scene.num_frames == 150  # every image is one (camera, time) pair on a 150-step grid
    times = torch.cat([scene.times(s) for s in ("train", "val", "test")])
    assert float(times.min()) >= 0.0 and float(times.max()) <= 1.0
    assert scene.points is not None and scene.points.shape == (100_000, 3)
    assert scene.up == (0.0, 0.0, 1.0)

    small = load_scene(SCENE, scale=0.25, background="white")
    assert small.resolution == (200, 200)
    view = small.splits["train"][0]
    img = small.image(view)
    assert img.shape == (200, 200, 3) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0 and float(img.std()) > 0.01
    cam = small.camera(view)
    assert cam.Ks[0, 0, 0] == pytest.approx(857.8027682038233 / 4, rel=1e-5)
