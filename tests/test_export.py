"""`splat4d export`: a PLY (or the npz archive) read back and drawn by splat4d's rasterizer gives the model's
own rendering at that time, for every Gaussian method (static, deformable, ds4d, adcgs); point methods are covered in test_fourk4d_method."""

from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.cli import main
from splat4d.data import load_scene
from splat4d.io.ply import load_gaussians_ply
from splat4d.io.sequence import load_sequence_npz
from splat4d.methods.base import get_method
from splat4d.render import rasterize
from splat4d.train.densify import DensifyConfig
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore:ds4d. LPIPS unavailable")]

TIMES = (0.25, 0.75)
SETTINGS = {
    "static": dict(sh_degree=1, max_init_points=300),
    "deformable": dict(sh_degree=1, max_init_points=300, foreground_init_points=100, coarse_fraction=0.25,
                       grid_resolution=(8, 8, 8), multires=(1,), grid_dim=8, width=16),
    "ds4d": dict(features="patch", input_camera=1, pseudo_cameras=(2, 3), feature_cache="none", feature_size=28,
                 sh_degree=1, max_init_points=300, foreground_init_points=100, coarse_fraction=0.25,
                 grid_resolution=(8, 8, 8), multires=(1,), grid_dim=8, width=16),
    "adcgs": dict(k=3, feature_dim=8, residual_dim=4, time_dim=8, time_feature_dim=8, pe_freqs=2, hidden=8,
                  deform_hidden=8, max_init_anchors=60, refine_every=5, warmup_fraction=0.25),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, kw in SETTINGS.items():
        cfg = get_method(name).Config(**kw)
        if hasattr(cfg, "densify"):
            cfg.densify = DensifyConfig(start=1000)
        out[name] = tmp_path_factory.mktemp(name) / "run"
        fit(name, cfg, DataConfig("synthetic:tiny"), TrainConfig(iters=8, save_every=0, device="cpu"), out[name],
            progress=False)
    return out


def _draw(g: dict, cam, bg) -> torch.Tensor:
    K = g["sh"].shape[1]
    return rasterize(g["means"], g["quats"], g["scales"], g["opacities"], g["sh"], cam, background=bg,
                     sh_degree=int(np.sqrt(K)) - 1).rgb[0]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_exported_frames_render_like_the_model(runs, name, tmp_path, capsys):
    run = runs[name]
    ply_dir, npz = tmp_path / "ply", tmp_path / "seq.npz"
    times = ",".join(str(t) for t in TIMES)
    assert main(["export", str(run), "--times", *map(str, TIMES), "--out", str(ply_dir)]) == 0
    assert main(["export", str(run), "--times", times, "--format", "npz", "--out", str(npz)]) == 0
    method, _, _ = load_run(run, device="cpu")
    method.eval()
    scene = load_scene("synthetic:tiny")
    bg = torch.tensor(scene.background, dtype=torch.float32)
    cams = scene.cameras("test")
    kind, saved_times, frames = load_sequence_npz(npz)
    assert kind == "gaussians" and saved_times == pytest.approx(list(TIMES)), times
    plys = sorted(ply_dir.glob("*.ply"))
    assert len(plys) == len(TIMES)
    renders = []
    for t, ply, frame in zip(TIMES, plys, frames):
        with torch.no_grad():
            want = method.render(cams[0], t, bg).rgb[0]
            from_ply = _draw(load_gaussians_ply(ply), cams[0], bg)
            from_npz = _draw(frame, cams[0], bg)
        assert want.max() > 0.05  # something is drawn
        assert (from_ply - want).abs().max() <= 1e-5
        assert (from_npz - want).abs().max() <= 1e-5
        renders.append(want)
    assert not torch.equal(*renders) or name == "static"  # the two times differ for dynamic methods


def test_export_refuses_bad_output(runs, tmp_path, capsys):
    assert main(["export", str(runs["static"]), "--format", "npz", "--out", str(tmp_path / "a.ply")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert main(["export", str(runs["static"]), "--times", "0.1,x", "--out", str(tmp_path / "b")]) == 2
    assert main(["export", str(runs["static"]), "--times", "0.1,2", "--out", str(tmp_path / "c")]) == 2
    assert "--times" in capsys.readouterr().err and not (tmp_path / "b").exists()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(Exception, match="unreadable sequence archive"):
        load_sequence_npz(bad)
