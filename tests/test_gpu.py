"""The CUDA path end to end (skipped without a CUDA device): `static` and `deformable` fit through
densification, resume, eval and render on the GPU, and a frame rendered by gsplat matches the CPU backend's
frame of the same trained model. Run on a GPU machine with `pytest -m gpu tests/test_gpu.py`."""

import signal

import pytest
import torch

from splat4d.methods.deformable import DeformableConfig
from splat4d.methods.static import StaticConfig
from splat4d.train.checkpoint import load_checkpoint
from splat4d.train.densify import DensifyConfig
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig, Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DATA = DataConfig("synthetic:tiny")
DENSIFY = DensifyConfig(start=5, every=5, grad_threshold=2e-5, reset_every=15)


def _cfg(name: str):
    if name == "static":
        return StaticConfig(sh_degree=1, densify=DENSIFY)
    return DeformableConfig(coarse_fraction=0.25, sh_degree=1, max_init_points=300, grid_resolution=(8, 8, 8),
                            multires=(1,), grid_dim=8, width=16, densify=DENSIFY)


@pytest.mark.parametrize("name", ["static", "deformable"])
def test_fit_densify_resume_eval_render_on_cuda(name, tmp_path, monkeypatch):
    pytest.importorskip("gsplat")
    train = TrainConfig(iters=40, save_every=0, seed=0, device="cuda")
    step_once = Trainer._train_step

    def stop_at_17(self):
        logs = step_once(self)
        if self.step == 17:
            self._stop_signal = signal.SIGINT
        return logs

    monkeypatch.setattr(Trainer, "_train_step", stop_at_17)
    out = tmp_path / "run"
    assert fit(name, _cfg(name), DATA, train, out, progress=False)["interrupted"] == "SIGINT"
    monkeypatch.undo()
    mid = load_checkpoint(out, name)
    assert mid["extra"]["densify"]["gens"].keys() == {"cuda"}  # split noise drawn on the GPU
    result = fit(name, _cfg(name), DATA, train, out, resume=True, progress=False)
    assert result["iterations"] == 40 and result["psnr"] > 10 and result["fps"] > 0
    assert load_checkpoint(out, name)["model"]["gaussians.means"].shape[0] != 300

    method, _, _ = load_run(out, device="cuda")
    assert method.gaussians.means.is_cuda
    from splat4d.videos import render_video
    from splat4d.data import load_scene

    video = render_video(method, load_scene("synthetic:tiny"), "orbit", tmp_path / "orbit.mp4", frames=8)
    assert video.stat().st_size > 0


@pytest.mark.parametrize("name", ["static", "deformable"])
def test_cuda_frame_matches_cpu_backend(name, tmp_path):
    pytest.importorskip("gsplat")
    out = tmp_path / "run"
    fit(name, _cfg(name), DATA, TrainConfig(iters=30, save_every=0, device="cuda"), out, progress=False)
    method, _, _ = load_run(out, device="cuda")
    from splat4d.data import load_scene

    scene = load_scene("synthetic:tiny")
    cam = scene.cameras("test")[0]
    bg = torch.zeros(3)
    with torch.no_grad():
        gpu = method.render(cam.to("cuda"), 0.5, bg.cuda()).rgb.cpu()
        method = method.to("cpu")
        method.cfg.backend = "cpu"
        cpu = method.render(cam, 0.5, bg).rgb
    assert (gpu - cpu).abs().max() <= 2e-3


def test_point_selection_on_cuda_matches_the_cpu_kernel():
    from splat4d.cameras import Cameras
    from splat4d.render.points import project_points, select_nearest

    cam = Cameras.look_at((0.0, -3.0, 0.5), (0.0, 0.0, 0.0), width=40, height=30)
    g = torch.Generator().manual_seed(0)
    means, radii = (torch.rand(500, 3, generator=g) - 0.5) * 1.6, 0.05 + 0.1 * torch.rand(500, generator=g)
    uv, z, r = project_points(means, radii, cam)
    ref = select_nearest(uv, z, r, 40, 30, 8, "cpu")
    got = select_nearest(uv.cuda(), z.cuda(), r.cuda(), 40, 30, 8, "torch")
    assert got.device.type == "cuda" and torch.equal(got.cpu(), ref)


def test_fourk4d_fits_bakes_and_renders_on_cuda(tmp_path):
    from splat4d.methods.fourk4d.baked import bake
    from splat4d.methods.fourk4d.carve import CarveConfig
    from splat4d.methods.fourk4d.method import FourK4DConfig

    cfg = FourK4DConfig(carve=CarveConfig(coarse_resolution=12, refine=2, points=600), grid_resolution=(8, 8, 8),
                        grid_dim=4, multires=(1,), hidden=16)
    fit("fourk4d", cfg, DATA, TrainConfig(iters=10, save_every=0, seed=0, device="cuda"), tmp_path / "run",
        progress=False)
    method, _, _ = load_run(tmp_path / "run", "cuda")
    cpu, _, _ = load_run(tmp_path / "run", "cpu")
    from splat4d.data import load_scene

    scene = load_scene("synthetic:tiny")
    view = scene.split("test")[0]
    with torch.no_grad():
        a = method.render(scene.camera(view).to("cuda"), view.time).rgb.cpu()
        b = cpu.render(scene.camera(view), view.time).rgb
        c = bake(method).to("cuda").render(scene.camera(view).to("cuda"), view.time).rgb.cpu()
    assert float((a - b).abs().max()) < 1e-3 and float((a - c).abs().max()) < 2e-3


def test_diffusion2_tiny_priors_sample_on_cuda_in_fp16(tmp_path):
    """The Diffusion² adapters and sampler keep every tensor on the GPU (fp16 priors, as generate uses)."""
    pytest.importorskip("diffusers")
    from splat4d.methods.diffusion2 import sample_image_matrix
    from splat4d.methods.diffusion2.priors import load_priors
    from splat4d.methods.diffusion2.tiny import write_tiny_priors

    p = load_priors(*write_tiny_priors(tmp_path), device="cuda", dtype=torch.float16)
    shape = p.space.latent_shape(32)
    image = p.space.encode(torch.rand(1, 3, 32, 32))[0].float()
    m = sample_image_matrix(p.video, p.multiview, 3, 4, shape, image=image, num_steps=4, rollback_steps=1,
                            generator=torch.Generator().manual_seed(0))
    assert m.device.type == "cuda" and m.shape == (3, 4, *shape) and torch.isfinite(m).all()
    assert p.space.decode(m.flatten(0, 1)).shape == (12, 3, 32, 32)


def test_ds4d_fits_and_renders_on_cuda(tmp_path):
    """ds4d's feature buffers, point-feature sampling and fusion stay on the GPU (patch features)."""
    pytest.importorskip("gsplat")
    from splat4d.methods.ds4d.method import DS4DConfig

    cfg = DS4DConfig(features="patch", input_camera=1, pseudo_cameras=(2, 3), feature_cache="none", feature_size=28,
                     coarse_fraction=0.25)
    out = tmp_path / "ds4d"
    result = fit("ds4d", cfg, DATA, TrainConfig(iters=40, save_every=0, device="cuda"), out, progress=False)
    assert result["psnr"] > 10 and result["features"].startswith("patch")
    method, _, _ = load_run(out, "cuda")
    assert method.grids.is_cuda and method.frame_times.is_cuda
