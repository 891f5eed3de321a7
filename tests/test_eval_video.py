"""The Consistent4D protocol (`splat4d.eval_video`): Fréchet distance against closed forms, clip windows,
CLIP through a tiny random transformers model, FVD through a tiny TorchScript with I3D's call, FID-VID
through a tiny 3D ResNet state dict, "unavailable" reasons, and `splat4d eval --protocol consistent4d`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from splat4d import eval_video as ev
from splat4d.cli import main
from splat4d.resnet3d import ResNet3D, resnet3d_features, resnet3d_from_state_dict

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
ENVS = (ev.CLIP_ENV, ev.I3D_ENV, ev.FIDVID_ENV, "SPLAT4D_LPIPS_WEIGHTS")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


class TinyI3D(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: the same call, [B, 3, T, H, W] -> [B, 8]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(24, 8)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = True, return_features: bool = True) -> Tensor:
        return self.proj(F.adaptive_avg_pool3d(x, 2).flatten(1))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """A tiny random CLIP vision model folder, a TorchScript I3D stand-in and a tiny 3D ResNet checkpoint."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(root / "clip")
    torch.jit.save(torch.jit.script(TinyI3D()), str(root / "i3d.pt"))
    net = ResNet3D(blocks=(1, 1, 1, 1), width=4)
    for m in net.modules():  # non-trivial BatchNorm statistics, as a trained checkpoint has
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    torch.save({"arch": "resnet-50", "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               root / "r3d.pth")
    return {"clip": root / "clip", "i3d": root / "i3d.pt", "fidvid": root / "r3d.pth"}


# ----------------------------------------------------------------------------- Fréchet distance
def test_frechet_matches_closed_form_for_diagonal_gaussians():
    g = torch.Generator().manual_seed(1)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    s1, s2 = torch.rand(6, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, generator=g, dtype=torch.float64)
    want = float((mu1 - mu2).pow(2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())
    assert ev.frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(want, rel=1e-10)


def test_frechet_matches_eigenvalues_of_the_product_for_full_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Tr sqrt(S1 S2) = sum of sqrt of the (real, non-negative) eigenvalues of S1 S2
    tr = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    got = ev.frechet_distance(*(torch.from_numpy(x) for x in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(want, rel=1e-9)
    assert ev.frechet_distance(*(torch.from_numpy(x) for x in (mu1, s1, mu1, s1))) == pytest.approx(0, abs=1e-9)


def test_gaussian_stats_is_numpy_cov_and_singular_covariances_stay_finite():
    f = torch.randn(3, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mu, sigma = ev.gaussian_stats(f)
    assert torch.allclose(sigma, torch.from_numpy(np.cov(f.numpy(), rowvar=False)))
    d = ev.frechet_distance(mu, sigma, *ev.gaussian_stats(f + 0.5))  # rank 2 covariances in 10-d
    assert d == pytest.approx(0.25 * 10, rel=1e-9)  # a pure shift: only the mean term remains
    with pytest.raises(ValueError, match="at least 2"):
        ev.gaussian_stats(f[:1])


# ----------------------------------------------------------------------------- clips
@pytest.mark.parametrize("frames, windows", [
    (32, [(0, 16), (8, 24), (16, 32)]),
    (20, [(0, 16), (4, 20)]),
    (16, [(0, 16)]),
    (4, [(0, 2), (1, 3), (2, 4)]),
    (2, [(0, 1), (1, 2)]),
    (1, [(0, 1)]),
])
def test_clip_windows(frames, windows):
    assert ev.clip_windows(frames, 16) == windows


def test_video_clips_pad_with_the_last_frame_and_one_clip_is_unavailable():
    video = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 2, 3)
    clips = ev.video_clips(video, 16)  # [3, 3, 16, 2, 2]
    assert clips.shape == (3, 3, 16, 2, 2)
    assert clips[0, 0, :, 0, 0].tolist() == [0, 1] + [1] * 14
    assert clips[2, 0, :, 0, 0].tolist() == [2, 3] + [3] * 14
    one = ev.fvd_of_features(torch.zeros(1, 8), torch.zeros(1, 8), "fvd")
    assert one.startswith("unavailable: fvd needs at least 2 clips")


# ----------------------------------------------------------------------------- CLIP
def test_clip_similarity_identical_is_one_and_different_is_less(weights):
    net, prep = ev.load_clip(str(weights["clip"]))
    assert prep["size"] == prep["crop"] == 32 and prep["mean"] == ev.CLIP_MEAN
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(2, 48, 40, 3, generator=g), torch.rand(2, 48, 40, 3, generator=g)
    assert torch.allclose(ev.clip_similarity(a, a, net, prep), torch.ones(2), atol=1e-5)
    assert (ev.clip_similarity(a, b, net, prep) < 1 - 1e-4).all()


def test_clip_preprocess_follows_clip_image_processor(weights, tmp_path):
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(weights["clip"])  # the loader reads preprocessor_config.json when present
    _, prep = ev.load_clip(str(weights["clip"]))
    assert prep == {"size": 32, "crop": 32, "mean": tuple(proc.image_mean), "std": tuple(proc.image_std)}
    y, x = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([x, y, (x + y) / 2], -1)  # smooth, so PIL's and torch's bicubic agree closely
    ref = proc((img * 255).round().to(torch.uint8).numpy(), return_tensors="pt")["pixel_values"]
    ours = ev.clip_preprocess((img * 255).round()[None] / 255, prep)
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    # PIL resamples uint8 (rounding ~0.5/255 per pass) and torch float: measured mean 0.004, max 0.014
    assert (ours - ref).abs().mean() < 0.008 and (ours - ref).abs().max() < 0.03


def test_clip_unavailable_reasons(tmp_path, monkeypatch):
    with pytest.raises(ev.VideoMetricUnavailable, match=f"unavailable: no CLIP model .*{ev.CLIP_ENV}"):
        ev.load_clip()
    monkeypatch.setenv(ev.CLIP_ENV, str(tmp_path / "missing"))
    with pytest.raises(ev.VideoMetricUnavailable, match="unavailable: cannot load CLIP model .*missing"):
        ev.load_clip()


# ----------------------------------------------------------------------------- FVD and FID-VID
def test_fvd_is_zero_for_identical_sets_and_grows_with_a_shift(weights):
    net = ev.load_i3d(weights["i3d"])
    clips = torch.rand(6, 3, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    base = ev.i3d_features(net, clips)
    assert base.shape == (6, 8)
    assert ev.fvd_of_features(base, base, "fvd") == pytest.approx(0, abs=1e-9)
    d = [ev.fvd_of_features(ev.i3d_features(net, (clips + s).clamp(0, 1)), base, "fvd") for s in (0.1, 0.2, 0.4)]
    assert 0 < d[0] < d[1] < d[2]


def test_fidvid_loads_a_hara_checkpoint_and_is_zero_for_identical_sets(weights):
    net = ev.load_fidvid(weights["fidvid"])
    assert isinstance(net, ResNet3D) and net.feature_dim == 4 * 8 * 4
    clips = torch.rand(3, 3, 16, 20, 24, generator=torch.Generator().manual_seed(6))
    f = resnet3d_features(net, clips)
    assert f.shape == (3, 128) and torch.isfinite(f).all()
    assert ev.fvd_of_features(f, f, "fid_vid") == pytest.approx(0, abs=1e-9)
    assert ev.fvd_of_features(resnet3d_features(net, clips * 0.5), f, "fid_vid") > 0
    full = ResNet3D()  # ResNet-50 layout: the blocks per stage are read back from the keys
    assert resnet3d_from_state_dict(full.state_dict()).feature_dim == 2048


def test_video_network_unavailable_reasons(tmp_path):
    with pytest.raises(ev.VideoMetricUnavailable, match=f"no I3D weights .*--i3d-weights.*{ev.I3D_ENV}"):
        ev.load_i3d()
    with pytest.raises(ev.VideoMetricUnavailable, match="not found"):
        ev.load_i3d(tmp_path / "i3d_torchscript.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ev.VideoMetricUnavailable, match="not a TorchScript I3D"):
        ev.load_i3d(tmp_path / "junk.pt")
    with pytest.raises(ev.VideoMetricUnavailable, match=f"no FID-VID weights .*{ev.FIDVID_ENV}.*resnet-50-kinetics"):
        ev.load_fidvid()
    torch.save({"state_dict": {"fc.weight": torch.zeros(4, 4)}}, tmp_path / "bad.pth")
    with pytest.raises(ev.VideoMetricUnavailable, match="not a 3D ResNet state dict"):
        ev.load_fidvid(tmp_path / "bad.pth")


# ----------------------------------------------------------------------------- splat4d eval
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A deformable run on synthetic:tiny (test split: one camera, 4 frames), 4 iterations."""
    from splat4d.methods.deformable import DeformableConfig
    from splat4d.train.densify import DensifyConfig
    from splat4d.train.run import DataConfig, fit
    from splat4d.train.trainer import TrainConfig

    out = tmp_path_factory.mktemp("c4d") / "run"
    cfg = DeformableConfig(coarse_fraction=0.25, sh_degree=1, max_init_points=300, foreground_init_points=100,
                           grid_resolution=(8, 8, 8), multires=(1,), grid_dim=8, width=16,
                           densify=DensifyConfig(start=1000))
    fit("deformable", cfg, DataConfig("synthetic:tiny"), TrainConfig(iters=4, save_every=0, device="cpu"), out,
        progress=False)
    return out


def test_eval_protocol_consistent4d_writes_the_four_metrics(run, weights, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["eval", str(run), "--out", str(out), "--protocol", "consistent4d", "--clip-model", str(weights["clip"]),
            "--i3d-weights", str(weights["i3d"]), "--fidvid-weights", str(weights["fidvid"])]
    assert main(argv) == 0
    assert "consistent4d protocol (1 videos, 4 frames, 3 clips of 16)" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())["test"]
    assert "psnr" in m  # the standard metrics stay
    c = m["consistent4d"]
    assert {"clip", "lpips", "fvd", "fid_vid"} <= set(c)
    assert isinstance(c["clip"], float) and 0 < c["clip"] <= 1 + 1e-6
    assert isinstance(c["fvd"], float) and c["fvd"] >= 0 and isinstance(c["fid_vid"], float) and c["fid_vid"] >= 0
    assert c["lpips"].startswith("unavailable: no LPIPS weights")
    assert "singular" in c["notes"]["fid_vid"]  # 3 clips for 128-d features, said so

    # no weights anywhere: every metric says why, nothing crashes
    assert main(["eval", str(run), "--out", str(tmp_path / "ev2"), "--protocol", "consistent4d"]) == 0
    c = json.loads((tmp_path / "ev2" / "metrics.json").read_text())["test"]["consistent4d"]
    assert c["clip"].startswith("unavailable: no CLIP model (pass --clip-model")
    assert c["fvd"].startswith("unavailable: no I3D weights") and c["fid_vid"].startswith("unavailable: no FID-VID")


@pytest.mark.parametrize("args, message", [
    (["--protocol", "consistent5d"], "--protocol"),
    (["--clip-model", "clipdir"], "--clip-model is only used with --protocol consistent4d"),
    (["--protocol", "consistent4d", "--i3d-weights", " "], "--i3d-weights must be a non-empty string"),
])
def test_eval_protocol_flags_are_validated(tmp_path, capsys, args, message):
    assert main(["eval", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("splat4d: error:") and message in err
