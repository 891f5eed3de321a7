"""The `splat4d` command: info (and --check), synth, eval, render, export, and one-line errors with exit 2.

Most commands run in-process through `splat4d.cli.main` (the console script's entry point) to save the
~3 s interpreter start each; the tests that must see what a shell sees (no traceback) run the script.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ENV, SPLAT4D
from data_builders import known_cameras, write_dnerf

from splat4d.cli import main
from splat4d.commands import visible_gaussians
from splat4d.io.ply import load_gaussians_ply
from splat4d.io.video import read_video
from splat4d.methods.deformable import DeformableConfig
from splat4d.train.densify import DensifyConfig
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig

METRIC_KEYS = {"psnr", "ssim", "dssim", "lpips", "lpips_note", "fps", "size_mb", "num_gaussians", "iterations"}


pytestmark = pytest.mark.usefixtures("one_thread", "no_lpips_weights")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A deformable run on synthetic:tiny, 8 iterations (deformation on from iteration 2)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    cfg = DeformableConfig(coarse_fraction=0.25, sh_degree=1, max_init_points=300, foreground_init_points=100,
                           grid_resolution=(8, 8, 8),
                           multires=(1,), grid_dim=8, width=16, densify=DensifyConfig(start=1000))
    fit("deformable", cfg, DataConfig("synthetic:tiny"), TrainConfig(iters=8, save_every=0, device="cpu"), out,
        progress=False)
    return out


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    assert main(["synth", "tiny", "--out", str(out)]) == 0
    return out


def _script(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(SPLAT4D + args, capture_output=True, text=True, env=ENV, timeout=60)


def _info_fields(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    fields = {"header": lines[0]}
    for ln in lines[1:]:
        key, _, value = ln.strip().partition("  ")
        fields[key] = value.strip()
    return fields


# ----------------------------------------------------------------------------- info / synth
def test_info_synthetic(capsys):
    assert main(["info", "synthetic:tiny"]) == 0
    f = _info_fields(capsys.readouterr().out)
    assert f["header"] == "tiny: format synthetic"
    assert f["views"] == "train 12, test 4"  # 4 cameras x 4 frames, camera 0 held out
    assert f["resolution"] == "32x32"
    assert f["cameras"] == "4" and f["frames"] == "4"
    assert f["time range"] == "0.0000 .. 1.0000"


def test_info_missing_path_is_one_line_exit_2():
    r = _script(["info", "/nonexistent/splat4d-data"])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["splat4d: error: no such dataset path /nonexistent/splat4d-data"]
    assert r.stdout == ""


def test_synth_then_info_detects_easyvolcap(synth_dir, capsys):
    assert (synth_dir / "intri.yml").is_file() and (synth_dir / "extri.yml").is_file()
    assert len(list((synth_dir / "images").glob("*/*.png"))) == 16
    assert main(["info", str(synth_dir), "--check"]) == 0
    out = capsys.readouterr().out
    f = _info_fields(out)
    assert f["header"] == "tiny: format easyvolcap"
    assert f["views"] in ("train 12, test 4", "train 12, val 0, test 4")
    assert f["resolution"] == "32x32" and f["cameras"] == "4" and f["frames"] == "4"
    assert f["init points"] == "1000"
    assert "checked 16 views: 0 problem(s)" in out


def test_info_check_names_corrupt_image_easyvolcap(synth_dir, tmp_path, capsys):
    root = tmp_path / "broken"
    shutil.copytree(synth_dir, root)
    bad = root / "images" / "02" / "000001.png"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated PNG
    assert main(["info", str(root)]) == 0  # without --check the folder still loads
    capsys.readouterr()
    assert main(["info", str(root), "--check"]) == 2
    out = capsys.readouterr().out
    bad_lines = [ln for ln in out.splitlines() if ln.strip().startswith("bad:")]
    assert len(bad_lines) == 1 and str(bad) in bad_lines[0]
    assert "checked 16 views: 1 problem(s)" in out


def test_info_check_names_corrupt_image_dnerf(tmp_path, capsys):
    write_dnerf(tmp_path, known_cameras(3), {"train": [(0, 0.0), (1, 0.5), (2, 1.0)], "test": [(0, 0.25)]})
    (tmp_path / "train" / "r_001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["info", str(tmp_path), "--check"]) == 2
    out = capsys.readouterr().out
    assert "format dnerf" in out.splitlines()[0]
    bad_lines = [ln for ln in out.splitlines() if ln.strip().startswith("bad:")]
    assert len(bad_lines) == 1 and "r_001.png" in bad_lines[0]


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: splat4d COMMAND") and "Traceback" not in err
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- eval / render / export
def test_eval_writes_metrics_json(run, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["eval", str(run), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "psnr" in stdout and "unavailable" in stdout
    data = json.loads((out / "metrics.json").read_text())
    assert list(data) == ["test"]
    m = data["test"]
    assert METRIC_KEYS <= set(m)
    assert m["lpips"] is None and m["lpips_note"].startswith("unavailable")
    assert m["iterations"] == 8
    assert m["num_gaussians"] == 400
    assert 5 < m["psnr"] < 60 and 0 < m["ssim"] <= 1 and m["dssim"] == pytest.approx((1 - m["ssim"]) / 2)
    assert m["fps"] > 0 and m["size_mb"] > 0
    assert len(list((out / "eval").glob("*.png"))) == 4  # one per test view
    # the run's own metrics.json (written by fit) agrees on the image metrics
    own = json.loads((run / "metrics.json").read_text())["test"]
    assert own["psnr"] == pytest.approx(m["psnr"], abs=1e-6)


def test_eval_without_run_is_one_line_exit_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("splat4d: error: no config file")


def test_render_orbit_mp4(run, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    assert main(["render", str(run), "--path", "orbit", "--frames", "4", "--out", str(out)]) == 0
    video = read_video(out)
    assert video.shape == (4, 32, 32, 3) and video.dtype.name == "uint8"
    assert video.max() > 0  # not an empty render
    assert not (video[0] == video[1]).all()  # the camera moves


def test_render_test_path_side_by_side(run, tmp_path, capsys):
    out = tmp_path / "test.mp4"
    assert main(["render", str(run), "--path", "test", "--side-by-side", "--fps", "4", "--out", str(out)]) == 0
    video = read_video(out)
    assert video.shape[0] == 4 and video.shape[2] == 3 * 32 + 2 * 2  # 4 test views: truth | render | error
    truth, render, error = video[0, :32, :32], video[0, :32, 34:66], video[0, :32, 68:100]
    assert truth.max() > 0 and render.max() > 0
    # the error panel is dark where render and truth agree (the codec blurs a little: compare coarsely)
    close = (np.abs(truth.astype(int) - render.astype(int)).mean(-1) < 4)
    assert error[close].mean() < 40


def test_render_bullet_freezes_time_and_fixed_holds_the_camera(run, tmp_path, capsys):
    from splat4d.data import load_scene
    from splat4d.videos import path_cameras, path_times

    scene = load_scene("synthetic:tiny")
    bullet, fixed = path_cameras(scene, "bullet", 3), path_cameras(scene, "fixed", 3, camera=1)
    assert not torch.equal(bullet.viewmats[0], bullet.viewmats[1])
    assert torch.equal(fixed.viewmats[0], fixed.viewmats[2])
    assert path_times("bullet", 3, None) == [0.5] * 3 and path_times("bullet", 3, 0.2) == [0.2] * 3
    assert path_times("fixed", 3, None) == [0.0, 0.5, 1.0]
    out = tmp_path / "fixed.mp4"
    assert main(["render", str(run), "--path", "fixed", "--camera", "1", "--frames", "3", "--out", str(out)]) == 0
    video = read_video(out)
    assert video.shape[0] == 3 and not (video[0] == video[2]).all()  # the scene moves under a still camera
    assert main(["render", str(run), "--path", "orbit", "--side-by-side", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "--side-by-side needs --path test" in capsys.readouterr().err
    assert main(["render", str(run), "--path", "fixed", "--camera", "9", "--out", str(tmp_path / "y.mp4")]) == 2
    assert "out of range" in capsys.readouterr().err and not (tmp_path / "y.mp4").exists()


def test_export_ply_frames(run, tmp_path, capsys):
    out = tmp_path / "ply"
    assert main(["export", str(run), "--frames", "2", "--out", str(out)]) == 0
    files = sorted(out.glob("*.ply"))
    assert [f.name for f in files] == ["frame_0000_t0.0000.ply", "frame_0001_t1.0000.ply"]
    method, _, _ = load_run(run, device="cpu")
    for f, t in zip(files, (0.0, 1.0)):
        g = load_gaussians_ply(f)
        ref = visible_gaussians(method.gaussians_at(t))
        assert g["means"].shape == ref["means"].shape and g["sh_degree"] == 1
        assert 0 < len(g["means"]) <= method.num_primitives
        torch.testing.assert_close(g["means"], ref["means"].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(g["opacities"], ref["opacities"].detach(), atol=1e-5, rtol=1e-5)
    a, b = (load_gaussians_ply(f)["means"] for f in files)
    assert not torch.equal(a, b)  # deformed differently at t = 0 and t = 1
