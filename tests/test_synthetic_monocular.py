"""The monocular camera schedule and the fast-motion preset (the D-NeRF situation without real data)."""

import time

import numpy as np
import pytest

from splat4d.data import load_scene
from splat4d.data.synthetic import PRESETS, SyntheticWorld, camera_schedule, load_synthetic, synthetic_config
from splat4d.errors import ConfigError

# a small monocular scene: 24 frames, frames 4, 12, 20 held out for the test cameras 0 and 2 in turn
SMALL = dict(num_cameras=6, num_frames=24, width=24, height=24, schedule="monocular", test_cameras=(0, 2),
             num_points=200)


def test_monocular_one_view_per_train_time_and_test_times_held_out():
    scene = load_synthetic("tiny", **SMALL)
    train, test = scene.split("train"), scene.split("test")
    assert scene.views_per_time("train") == 1.0 and scene.views_per_time("test") == 1.0
    assert [v.frame_id for v in test] == [4, 12, 20]
    assert [v.cam_id for v in test] == [0, 2, 0]  # cycling over test_cameras
    assert sorted(v.frame_id for v in train) == [f for f in range(24) if f % 8 != 4]
    assert len({v.time for v in train}) == len(train) == 21  # one view per training time
    assert not {v.time for v in train} & {v.time for v in test}  # test times are never trained on
    assert {v.cam_id for v in train} <= {1, 3, 4, 5}  # training cameras exclude the test cameras
    assert len({v.cam_id for v in train}) >= 3  # drawn at random, not one fixed camera
    # consecutive training frames come from unrelated viewpoints, not a sweep
    cams = [v.cam_id for v in train]
    assert sum(a == b for a, b in zip(cams, cams[1:])) < len(cams) // 2
    world = SyntheticWorld(synthetic_config("tiny", **SMALL))
    for v in (train[0], train[5], test[1]):  # each view is the rendering of its own camera at its own time
        out = world.render(world.cameras()[v.cam_id], v.time)
        np.testing.assert_array_equal(v.image.read()[..., :3], (out["rgb"][0] * 255 + 0.5).byte().numpy())
        np.testing.assert_array_equal(v.depth, out["depth"][0].numpy())


def test_monocular_schedule_is_deterministic_for_a_seed():
    a = camera_schedule(synthetic_config("tiny", **SMALL))
    assert a == camera_schedule(synthetic_config("tiny", **SMALL))
    b = camera_schedule(synthetic_config("tiny", **{**SMALL, "seed": 1}))
    assert a != b
    s1, s2 = load_synthetic("tiny", **SMALL), load_synthetic("tiny", **SMALL)
    for v1, v2 in zip(s1.split("train") + s1.split("test"), s2.split("train") + s2.split("test")):
        assert (v1.cam_id, v1.frame_id) == (v2.cam_id, v2.frame_id)
        np.testing.assert_array_equal(v1.image.read(), v2.image.read())
    # the rig schedule is unchanged: every camera at every frame
    rig = camera_schedule(synthetic_config("tiny"))
    assert rig == [[(0, "test"), (1, "train"), (2, "train"), (3, "train")]] * 4


def test_schedule_errors():
    with pytest.raises(ConfigError, match="schedule"):
        load_synthetic("tiny", schedule="orbit")
    with pytest.raises(ConfigError, match="test frame"):
        load_synthetic("tiny", schedule="monocular")  # 4 frames, test_every 8: no test frame
    with pytest.raises(ConfigError, match="test_every"):
        load_synthetic("tiny", **{**SMALL, "test_every": 0})
    with pytest.raises(ConfigError, match="sphere_radius"):
        load_synthetic("tiny", sphere_radius=0.0)


def test_fast_preset_objects_travel_many_body_sizes():
    cfg = PRESETS["fast"]
    assert cfg.schedule == "monocular" and cfg.num_frames == 150 and cfg.speed >= 1.5
    world = SyntheticWorld(cfg)
    times = world.times()
    sphere = world.object("sphere")
    radius = float(np.linalg.norm(sphere.frame(0.0)[1], 2))
    assert radius == pytest.approx(0.12)
    centres = np.array([sphere.center(t) for t in times])
    travel = np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()
    assert travel / (2 * radius) > 12  # ~14 diameters over the clip (the docstring's figure)
    box = world.object("box")
    box_path = np.linalg.norm(np.diff(np.array([box.center(t) for t in times]), axis=0), axis=1).sum()
    assert box_path / (2 * box.half.max()) > 9
    # fast between frames too: ~0.1 diameter per frame, not a crawl
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert step.min() / (2 * radius) > 0.05


def test_load_scene_synthetic_fast():
    t0 = time.perf_counter()
    scene = load_scene("synthetic:fast")
    elapsed = time.perf_counter() - t0
    assert elapsed < 15, f"fast preset took {elapsed:.1f} s to build"
    assert scene.name == "fast" and scene.format == "synthetic"
    assert scene.resolution == (128, 128) and scene.num_frames == 150 and scene.num_cameras == 24
    assert len(scene.split("train")) == 131 and len(scene.split("test")) == 19
    assert scene.views_per_time("train") == 1.0
    assert scene.background == (0.0, 0.0, 0.0)  # synthetic scenes stay black by default
    assert {v.cam_id for v in scene.split("test")} == {0, 7, 14, 19}
    assert not {v.cam_id for v in scene.split("train")} & {0, 7, 14, 19}
