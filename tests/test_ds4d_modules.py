"""DS4D's parts: DSFD (eqs. 1-2), TSSF point features and fusion (eqs. 3-4), frame features (patch and a
tiny saved DINOv2), the feature cache and the channel reduction."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.errors import WeightsNotFound
from splat4d.methods.ds4d import features as feat
from splat4d.methods.ds4d.dsfd import decouple, project
from splat4d.methods.ds4d.tssf import Fusion, point_features


# ----------------------------------------------------------------------------- DSFD
def test_identical_frames_have_no_dynamic_part():
    f = torch.randn(1, 2, 5, 8, dtype=torch.float64).expand(6, 2, 5, 8).contiguous()
    out, parts = decouple(f, return_parts=True)
    assert out.shape == (6, 2, 5, 16)
    assert torch.equal(out[..., :8], f)  # the first D channels are the frame's own features
    for name in ("dynamic_mid", "dynamic_mean"):
        assert parts[name].abs().max() < 1e-12
    assert out[..., 8:].abs().max() < 1e-12
    torch.testing.assert_close(parts["static_mid"], f)


@pytest.mark.parametrize("per_token", [True, False])
def test_dynamic_part_is_orthogonal_to_its_reference(per_token):
    torch.manual_seed(0)
    f = torch.randn(5, 3, 7, 6, dtype=torch.float64)
    out, parts = decouple(f, per_token=per_token, return_parts=True)
    refs = {"mid": f[2], "mean": f.mean(0)}  # T = 5: the middle frame is frame 2
    for name, r in refs.items():
        dyn = parts[f"dynamic_{name}"]
        dots = (dyn * r).sum(-1) if per_token else (dyn * r).sum((-2, -1))
        assert dots.abs().max() < 1e-10
        torch.testing.assert_close(parts[f"static_{name}"] + dyn, f)  # eq. 2
    torch.testing.assert_close(out[..., 6:], 0.5 * (parts["dynamic_mid"] + parts["dynamic_mean"]))


def test_projection_by_hand_and_zero_reference():
    f = torch.tensor([[[[3.0, 4.0]]]])  # [T=1, V=1, P=1, D=2]
    r = torch.tensor([[[[1.0, 0.0]]]])
    torch.testing.assert_close(project(f, r), torch.tensor([[[[3.0, 0.0]]]]))
    assert torch.equal(project(f, torch.zeros_like(r)), torch.zeros_like(f))
    with pytest.raises(ValueError, match=r"\[T, V, P, D\]"):
        decouple(torch.zeros(3, 4, 5))


def test_per_token_and_per_frame_differ():
    torch.manual_seed(1)
    f = torch.randn(3, 1, 4, 5)
    assert not torch.allclose(decouple(f, per_token=True), decouple(f, per_token=False))


# ----------------------------------------------------------------------------- TSSF
@pytest.mark.parametrize("mode", ["ga", "da"])
def test_fusion_weights_sum_to_one(mode):
    torch.manual_seed(0)
    fusion = Fusion(6, mode)
    torch.nn.init.normal_(fusion.fc.weight)
    feats = torch.randn(50, 4, 6)
    out, w = fusion(feats, return_weights=True)
    assert out.shape == (50, fusion.out_dim)
    torch.testing.assert_close(w.sum(1), torch.ones(50))
    assert (w > 0).all() and w.shape == (50, 4 if mode == "ga" else 2)


def test_ga_is_the_weighted_sum_and_da_matches_its_definition():
    torch.manual_seed(2)
    feats = torch.randn(10, 3, 4)
    ga = Fusion(4, "ga")
    out, w = ga(feats, return_weights=True)
    torch.testing.assert_close(out, (w[..., None] * feats).sum(1))
    da = Fusion(4, "da")
    out, w = da(feats, return_weights=True)
    pseudo = torch.cat([feats[:, 1:], (feats[:, 1:] - feats[:, :1]).abs()], -1)
    wp = torch.softmax(da.fc_pseudo(pseudo)[..., 0], 1)
    fused = (wp[..., None] * pseudo).sum(1)
    front = torch.cat([feats[:, 0], torch.zeros_like(feats[:, 0])], -1)
    cand = torch.stack([front, fused], 1)
    torch.testing.assert_close(out, (torch.softmax(da.fc(cand)[..., 0], 1)[..., None] * cand).sum(1))
    # one view: DA gives the front view's features with a zero distance part
    torch.testing.assert_close(da(feats[:, :1]), front)
    torch.testing.assert_close(Fusion(4, "mean")(feats), feats.mean(1))
    torch.testing.assert_close(Fusion(4, "front")(feats), feats[:, 0])
    with pytest.raises(ValueError, match="unknown fusion"):
        Fusion(4, "max")


def _camera():
    return Cameras.look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0), fov_deg=60.0, width=40, height=20)


def test_point_features_sample_where_points_project():
    cam = _camera()
    T, Ph, Pw = 2, 5, 10
    ys, xs = torch.meshgrid(torch.arange(Ph) + 0.5, torch.arange(Pw) + 0.5, indexing="ij")
    grid = torch.stack([xs / Pw, ys / Ph], -1)  # token centres' image coordinates, a linear field
    grids = torch.stack([grid, grid + 1.0])[:, None]  # [T=2, V=1, Ph, Pw, 2]
    pts = torch.tensor([[0.2, 0.0, 0.1], [-0.3, 0.5, -0.2], [0.0, -5.0, 0.0]])  # the last is behind the camera
    uv, z = cam.project(pts)
    f = point_features(grids, cam.viewmats, cam.Ks, (40, 20), pts, frame=0.25)
    assert f.shape == (3, 1, 2)
    expect = uv[0, :2] / torch.tensor([40.0, 20.0]) + 0.25  # bilinear is exact on a linear field (inside)
    torch.testing.assert_close(f[:2, 0], expect, atol=1e-5, rtol=0)
    assert z[0, 2] < 0 and torch.equal(f[2], torch.zeros(1, 2))


# ----------------------------------------------------------------------------- features
def test_patch_features_of_a_flat_image():
    img = torch.tensor([0.2, 0.5, 0.9]).expand(1, 28, 42, 3)
    f = feat.PatchFeatures(size=28)(img)
    assert f.shape == (1, 2, 3, 10)
    torch.testing.assert_close(f[..., :3], torch.tensor([0.2, 0.5, 0.9]).expand(1, 2, 3, 3), atol=1e-5, rtol=0)
    assert f[..., 3:].abs().max() < 1e-5  # no spread, no gradient
    assert feat.token_grid(96, 128, 224) == (16, 21)


def test_patch_features_see_edges():
    img = torch.zeros(1, 28, 28, 3)
    img[:, :, 14:] = 1.0
    f = feat.PatchFeatures(size=28)(img)[0]  # [2, 2, 10]
    assert f[:, 0, 8].max() > 0.01 and f[:, 1, 8].max() < f[:, 0, 8].max()  # |gx| at the edge column


def _tiny_dinov2(path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=28, patch_size=14)
    Dinov2Model(cfg).save_pretrained(path)


def test_dinov2_adapter_loads_a_saved_model(tmp_path):
    pytest.importorskip("transformers")
    _tiny_dinov2(tmp_path / "dino")
    ex = feat.DINOv2Features(str(tmp_path / "dino"), size=28)
    img = torch.rand(3, 30, 45, 3)
    f = ex(img)
    assert f.shape == (3, 2, 3, 16) and torch.isfinite(f).all()
    # the adapter's tokens are the model's own patch tokens on the normalised, resized image
    x = (feat.resize_to_grid(img, 28) - torch.tensor(feat.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(feat.IMAGENET_STD).view(1, 3, 1, 1)
    ref = ex.model(pixel_values=x).last_hidden_state[:, 1:].reshape(3, 2, 3, 16)
    torch.testing.assert_close(f, ref)


def test_missing_dinov2_names_what_to_download(tmp_path, monkeypatch):
    monkeypatch.delenv(feat.DINOV2_ENV, raising=False)
    with pytest.raises(WeightsNotFound, match="download facebook/dinov2-small.*--method.features patch"):
        feat.load_dinov2(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFound, match="DINOv2 weights not found"):
        feat.load_dinov2(str(tmp_path / "empty"))


class _Counting(feat.PatchFeatures):
    calls = 0

    def __call__(self, images):
        _Counting.calls += 1
        return super().__call__(images)


def test_features_are_cached_on_disk(tmp_path):
    imgs = torch.rand(3, 2, 28, 28, 3)
    ex = _Counting(size=28)
    a = feat.frame_features(imgs, ex, tmp_path)
    calls = _Counting.calls
    b = feat.frame_features(imgs, ex, tmp_path)
    assert _Counting.calls == calls and torch.equal(a, b) and len(list(tmp_path.glob("ds4d_patch_*.pt"))) == 1
    feat.frame_features(imgs.flip(0), ex, tmp_path)  # other images: computed again
    assert _Counting.calls > calls
    next(tmp_path.glob("ds4d_patch_*.pt")).write_bytes(b"garbage")  # a damaged entry is recomputed
    assert feat.frame_features(imgs, ex, tmp_path).shape == a.shape
    assert feat.cache_dir("none") is None and feat.cache_dir(str(tmp_path)) == tmp_path


def test_reduce_channels_keeps_the_dominant_subspace():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(12, 12))[0][:, :3]  # the data lies in 3 dimensions
    part = torch.randn(4, 2, 9, 3) @ basis.T
    x = torch.cat([part, 2 * part], -1)  # [.., 24]
    y = feat.reduce_channels(x, 3)
    assert y.shape == (4, 2, 9, 6)
    # dot products between tokens survive the projection onto the 3 leading directions
    g_x = torch.einsum("...i,...i->...", x[..., :12], x[..., :12])
    g_y = torch.einsum("...i,...i->...", y[..., :3], y[..., :3])
    torch.testing.assert_close(g_x, g_y, atol=1e-4, rtol=1e-4)
    assert torch.equal(feat.reduce_channels(x, 0), x) and torch.equal(feat.reduce_channels(x, 12), x)
    assert math.isfinite(float(y.sum()))
