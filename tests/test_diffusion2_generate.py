"""`splat4d generate diffusion2` end to end on tiny priors (4×4 matrix at 32², matrix → stage-2 fit → orbit
mp4), its bad input, and the stage-2 pieces (orbit rig, held-out views, warm-up and weighted view order)."""

import json
import math
import subprocess

import numpy as np
import pytest
import torch
from conftest import ENV, SPLAT4D

from splat4d.methods.diffusion2.stage2 import Stage2Config, Stage2Order, matrix_scene, view_weights

TINY = ["--views", "4", "--frames", "4", "--size", "32", "--steps", "4", "--rollback", "1", "--iters", "30",
        "--device", "cpu", "--method.max-init-points", "500", "--method.foreground-init-points", "300"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    pytest.importorskip("diffusers")
    from splat4d.methods.diffusion2.tiny import write_tiny_priors

    return write_tiny_priors(tmp_path_factory.mktemp("priors"))


def models(dirs):
    return ["--video-model", str(dirs[0]), "--multiview-model", str(dirs[1])]


def run(args, timeout=300):
    return subprocess.run(SPLAT4D + args, capture_output=True, text=True, env=ENV, timeout=timeout)


def write_png(path, rgba):
    from PIL import Image

    Image.fromarray(rgba).save(path)
    return path


def square(colour, size=40):
    a = np.zeros((size, size, 4), np.uint8)
    a[10:30, 10:30] = [*colour, 255]
    return a


def test_image_to_4d_writes_matrix_fit_and_videos(tmp_path, tiny_dirs):
    img = write_png(tmp_path / "in.png", square((200, 40, 40)))
    out = tmp_path / "run"
    r = run(["generate", "diffusion2", *models(tiny_dirs), "--image", str(img), *TINY, "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    pngs = sorted(p.name for p in (out / "matrix").iterdir())
    assert pngs == [f"v{v:02d}_f{f:02d}.png" for v in range(4) for f in range(4)]
    import imageio.v3 as iio

    assert iio.imread(out / "matrix.mp4").shape[0] == 4  # one grid per frame
    assert iio.imread(out / "orbit.mp4").shape[0] >= 8
    rec = json.loads((out / "generate.json").read_text())
    assert rec["reference_frame"] == 0 and rec["sample"]["rollback"] == 1
    assert math.isfinite(rec["fit_metrics"]["psnr"])
    r = run(["eval", str(out / "fit")])  # the fit is an ordinary run
    assert r.returncode == 0, r.stderr[-2000:]


def test_video_to_4d_takes_the_last_frame_as_reference(tmp_path, tiny_dirs):
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(6):
        write_png(frames / f"{i:03d}.png", square((40 * i, 100, 200)))
    out = tmp_path / "run"
    r = run(["generate", "diffusion2", *models(tiny_dirs), "--video", str(frames), *TINY, "--iters", "10",
             "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "generate.json").read_text())["reference_frame"] == 3


@pytest.mark.parametrize("case", ["no_image", "both", "bad_model", "bad_rollback", "empty_video_dir"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, tiny_dirs, case):
    img = write_png(tmp_path / "in.png", square((1, 2, 3)))
    (tmp_path / "empty").mkdir()
    src = {"no_image": ["--image", str(tmp_path / "missing.png")],
           "both": ["--image", str(img), "--video", str(img)],
           "bad_model": ["--image", str(img)], "bad_rollback": ["--image", str(img), "--rollback", "9"],
           "empty_video_dir": ["--video", str(tmp_path / "empty")]}[case]
    mods = models(tiny_dirs) if case != "bad_model" else ["--video-model", str(tmp_path / "nope"),
                                                           "--multiview-model", str(tiny_dirs[1])]
    out = tmp_path / "run"
    r = run(["generate", "diffusion2", *mods, *TINY, *src, "--out", str(out)])
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("splat4d: error")]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_orbit_rig_and_held_out_views():
    m = torch.rand(21, 3, 3, 16, 16)
    cfg = Stage2Config()
    scene = matrix_scene(m, cfg)
    cams = scene.cameras("train")
    assert torch.allclose(cams.centers.norm(dim=-1), torch.tensor(2.0), atol=1e-5)
    assert math.degrees(float(cams.fov_x[0])) == pytest.approx(33.8, abs=1e-3)
    test_cams = sorted({v.cam_id for v in scene.split("test")})
    assert test_cams == [3, 10, 17]
    assert len(scene.split("train")) == 18 * 3
    assert [v.time for v in scene.split("train")[:3]] == [0.0, 0.5, 1.0]


def test_view_order_warms_up_on_the_reference_frame_then_weights_by_distance():
    m = torch.rand(8, 5, 3, 8, 8)
    views = matrix_scene(m, Stage2Config(holdout_every=0)).split("train")
    order = Stage2Order(warmup_iters=10, views=8, frames=5, ref_frame=4, far_weight=0.25)
    gen = torch.Generator().manual_seed(0)
    warm = order(0, gen, views)
    assert sorted(views[i].frame_id for i in warm) == [4] * 8
    drawn = torch.tensor([i for _ in range(400) for i in order(10, gen, views)])
    counts = torch.bincount(drawn, minlength=len(views)).float()
    w = view_weights(torch.tensor([v.cam_id for v in views]), torch.tensor([v.frame_id for v in views]), 8, 5, 4, 0.25)
    assert float(w.max()) == 1.0 and float(w.min()) == pytest.approx(0.25)
    torch.testing.assert_close(counts / counts.sum(), w / w.sum(), atol=0.01, rtol=0)
