"""The `ds4d` method: camera split, features kept in the model, stages, losses per view kind, Table 2 flags,
checkpoint round trip, the CLI (fit / eval) and refused settings; top-fraction densification."""

import dataclasses
import json

import pytest
import torch

from splat4d.cli import main
from splat4d.data import load_scene
from splat4d.data.scene import select_cameras
from splat4d.errors import ConfigError, DatasetError
from splat4d.gaussians import Gaussians
from splat4d.methods.base import Batch
from splat4d.methods.ds4d.method import DS4D, TABLE2, DS4DConfig, FusedDeformation
from splat4d.train.densify import DensifyConfig, DensifyStrategy
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig


pytestmark = pytest.mark.usefixtures("one_thread", "no_lpips_weights")


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


def small(**kw) -> DS4DConfig:
    base = dict(features="patch", input_camera=1, pseudo_cameras=(2, 3), feature_cache="none", feature_size=28,
                sh_degree=1, max_init_points=300, foreground_init_points=100, grid_resolution=(8, 8, 8),
                multires=(1,), grid_dim=8, width=16, densify=DensifyConfig(start=1000, grow_fraction=0.025))
    return DS4DConfig(**{**base, **kw})


def test_cameras_split_into_input_pseudo_and_held_out(scene):
    cfg = small()
    sc = DS4D.prepare_scene(scene, cfg)
    assert {v.cam_id for v in sc.split("train")} == {1, 2, 3}
    assert {v.cam_id for v in sc.split("test")} == {0}
    assert len(sc.split("train")) + len(sc.split("test")) == 16
    assert DS4D.prepare_scene(scene, small(pseudo_cameras=())) is scene  # none listed: splits as read
    with pytest.raises(DatasetError, match="no camera 7"):
        DS4D.prepare_scene(scene, small(pseudo_cameras=(7,)))
    assert select_cameras(scene, (1, 2, 3)).split("test") == sc.split("test")


@pytest.mark.filterwarnings("ignore:ds4d. LPIPS")
def test_model_holds_decoupled_features_of_every_frame_and_view(scene):
    sc = DS4D.prepare_scene(scene, small())
    m = DS4D.from_scene(sc, small())
    assert m.grids.shape == (4, 3, 2, 2, 20)  # T frames, input + 2 pseudo views, 2x2 tokens, [f, dynamic]
    torch.testing.assert_close(m.frame_times, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert m.pseudo_flags.tolist() == [v.cam_id != 1 for v in sc.split("train")]
    assert isinstance(m.deformation, FusedDeformation)
    assert m.frame_index(0.5) == pytest.approx(1.5)
    assert m.describe()["features"].startswith("patch (weights-free")
    none = DS4D.from_scene(sc, small(features="none"))
    assert not isinstance(none.deformation, FusedDeformation)
    assert none.describe() == {"features": "none (no frame features)", "fusion": "none", "decouple": False}


@pytest.mark.filterwarnings("ignore:ds4d. LPIPS")
def test_feature_map_starts_as_the_hexplane_alone(scene):
    """Point features enter through a map that is zero on them at the start: deformable's field at step 0."""
    sc = DS4D.prepare_scene(scene, small())
    torch.manual_seed(0)
    m = DS4D.from_scene(sc, small())
    torch.nn.init.normal_(m.deformation.heads["xyz"][1].net[-1].weight)
    means = m.gaussians.means.detach()
    plain = m.deformation(means, 0.4)["xyz"]
    fused = m.deform(means, 0.4)["xyz"]
    torch.testing.assert_close(plain, fused)
    with torch.no_grad():
        m.deformation.mix.weight[:, -1] = 1.0
    assert not torch.allclose(plain, m.deform(means, 0.4)["xyz"])


def test_input_and_pseudo_views_get_their_losses(scene):
    sc = DS4D.prepare_scene(scene, small())
    with pytest.warns(UserWarning, match="pseudo views get the photometric loss x 0.5"):
        m = DS4D.from_scene(sc, small())
    m.dynamic.fill_(False)
    views = sc.split("train")
    bg = torch.zeros(3)
    idx = [0, 1]  # frame 0: camera 1 (input) then camera 2 (pseudo)
    assert [views[i].cam_id for i in idx] == [1, 2]
    cams = [sc.camera(views[i]) for i in idx]
    outs = [m.render(c, 0.0, bg) for c in cams]
    images = torch.stack([sc.image(views[i]) for i in idx])
    batch = Batch(cameras=None, times=torch.zeros(2), images=images, alphas=None, background=bg, index=torch.tensor(idx))
    total, logs = m.loss(batch, outs, 0)
    from splat4d.train.losses import photometric_loss

    a = photometric_loss(outs[0].rgb, images[:1], 0.2)[0]
    b = photometric_loss(outs[1].rgb, images[1:], 0.2)[0]
    torch.testing.assert_close(total, (a + 0.5 * b) / 2)
    assert "pseudo_l1" in logs and "psnr" in logs


def test_table2_rows_are_valid_configs():
    for row, flags in TABLE2.items():
        cfg = dataclasses.replace(DS4DConfig(), **flags)
        cfg.validate()
    assert TABLE2["H"]["fusion"] == "da" and TABLE2["A"]["random_init"]


@pytest.mark.parametrize("kw, match", [
    (dict(pseudo_cameras=(1, 2)), "must not hold the input camera"),
    (dict(pseudo_cameras=(2, 2)), "lists a camera twice"),
    (dict(fusion="max"), "method.fusion"),
    (dict(features="clip"), "method.features"),
    (dict(feature_size=7), "method.feature_size"),
    (dict(lambda_lpips=-1.0), "method.lambda_lpips"),
    (dict(lr_final_ratio=0.0), "method.lr_final_ratio"),
    (dict(densify=DensifyConfig(grow_fraction=1.5)), "grow_fraction"),
])
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        small(**kw).validate()


def test_a_camera_missing_frames_is_refused(scene):
    sc = DS4D.prepare_scene(scene, small())
    sc = dataclasses.replace(sc, splits={"train": [v for v in sc.split("train") if not (v.cam_id == 3 and v.frame_id == 2)]})
    with pytest.raises(DatasetError, match=r"camera\(s\) \[3\] have no view of frame 2"):
        DS4D.from_scene(sc, small())


def test_top_fraction_densification():
    g = Gaussians.from_points(torch.rand(200, 3), None, 0, 0.5)
    strategy = DensifyStrategy(DensifyConfig(grow_fraction=0.025, grow_scale3d=10.0), scene_extent=1.0)
    strategy.grad2d = torch.arange(200, dtype=torch.float32)
    strategy.count = torch.ones(200)
    strategy.count[:40] = 0  # unseen: never candidates
    opt = torch.optim.Adam([p for p in (g.means, g.log_scales, g.quats, g.opacity_logits, g.sh0, g.shN)])
    logs = strategy.grow(g, opt)
    assert len(g) == 200 + 4  # ceil(2.5 % of the 160 seen)
    torch.testing.assert_close(g.means[-4:], g.means[196:200])  # the four highest gradients are cloned


@pytest.mark.filterwarnings("ignore:ds4d. LPIPS")
def test_fit_eval_and_reload(tmp_path, scene):
    out = tmp_path / "run"
    fit("ds4d", small(coarse_fraction=0.25), DataConfig("synthetic:tiny"), TrainConfig(iters=12, save_every=0, device="cpu"),
        out, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert metrics["views"] == 4 and metrics["features"].startswith("patch")
    m, config, step = load_run(out, "cpu")
    assert step == 12 and bool(m.dynamic)
    sc = DS4D.prepare_scene(scene, m.cfg)
    v = sc.split("test")[0]
    a = m.render(sc.camera(v), 0.3, torch.zeros(3)).rgb
    m2, _, _ = load_run(out, "cpu")
    torch.testing.assert_close(a, m2.render(sc.camera(v), 0.3, torch.zeros(3)).rgb)
    assert main(["eval", str(out), "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())["test"]
    assert again["views"] == 4 and again["psnr"] == pytest.approx(metrics["psnr"], abs=1e-4)


def test_cli_fit_and_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPLAT4D_LPIPS_WEIGHTS", raising=False)
    args = ["fit", "ds4d", "--data", "synthetic:tiny", "--method.features", "patch", "--method.input-camera", "1",
            "--method.pseudo-cameras", "2", "3", "--method.feature-cache", "none", "--method.feature-size", "28",
            "--iters", "4", "--device", "cpu"]
    with pytest.warns(UserWarning, match="LPIPS unavailable.*photometric loss"):  # no LPIPS weights here: said once
        assert main([*args, "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "checkpoint.pt").is_file()
    capsys.readouterr()
    assert main([*args[:-4], "--method.fusion", "max", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fusion" in err[0] and not (tmp_path / "bad").exists()
    assert main(["fit", "ds4d", "--data", "synthetic:tiny", "--method.input-camera", "1", "--method.dinov2-model", str(tmp_path / "none"),
                 "--iters", "2", "--out", str(tmp_path / "nodino")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DINOv2 weights not found" in err[0] and not (tmp_path / "nodino").exists()
