"""Metrics against known answers and an independent SSIM; LPIPS loader with tiny random weights."""

import math
import os

import numpy as np
import pytest
import torch

from splat4d.metrics import (
    LPIPS_ENV,
    LPIPSNet,
    build_lpips_weights,
    dir_size_mb,
    dssim,
    file_size_mb,
    load_lpips,
    lpips,
    lpips_status,
    psnr,
    ssim,
    ssim_map,
    time_render,
)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- PSNR
def test_psnr_constant_offset_is_20db():
    ref = _rand(2, 16, 12, 3) * 0.8
    assert float(psnr(ref + 0.1, ref)) == pytest.approx(20.0, abs=1e-9)
    assert float(psnr((ref + 0.1).numpy(), ref.numpy())) == pytest.approx(20.0, abs=1e-9)
    assert float(psnr(ref, ref)) == pytest.approx(100.0)  # MSE floored, not inf


def test_psnr_uint8_and_per_image_mean():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] += 255  # image 0: MSE 1 -> 0 dB; image 1 identical -> 100 dB
    assert float(psnr(b, a)) == pytest.approx(50.0)


def test_masked_psnr_ignores_unmasked_pixels():
    ref = _rand(10, 10, 3) * 0.5
    img = ref.clone()
    mask = torch.zeros(10, 10)
    mask[2:7, 3:9] = 1
    img[mask > 0] += 0.1
    img[mask == 0] += 0.4  # large errors outside the mask must not count
    assert float(psnr(img, ref, mask=mask)) == pytest.approx(20.0, abs=1e-6)
    assert float(psnr(img, ref, mask=mask[..., None])) == pytest.approx(20.0, abs=1e-6)
    assert float(psnr(img, ref)) < 15
    with pytest.raises(ValueError):
        psnr(img, ref, mask=torch.zeros(10, 10))


# ----------------------------------------------------------------------------- SSIM
def _ssim_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Direct per-pixel SSIM with explicit loops: 11x11 Gaussian (sigma 1.5), zero padding. [H, W, C]"""
    H, W, C = x.shape
    r = 5
    g = np.array([math.exp(-((i - r) ** 2) / (2 * 1.5**2)) for i in range(2 * r + 1)])
    g = g / g.sum()
    out = np.zeros_like(x)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                mx = my = sxx = syy = sxy = 0.0
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        ii, jj = i + di, j + dj
                        if 0 <= ii < H and 0 <= jj < W:
                            w = g[di + r] * g[dj + r]
                            a, b = x[ii, jj, c], y[ii, jj, c]
                            mx += w * a
                            my += w * b
                            sxx += w * a * a
                            syy += w * b * b
                            sxy += w * a * b
                vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
                c1, c2 = 0.01**2, 0.03**2
                out[i, j, c] = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out


def test_ssim_matches_direct_loops():
    x = _rand(9, 13, 3, seed=1).numpy()
    y = np.clip(x + 0.2 * _rand(9, 13, 3, seed=2).numpy() - 0.1, 0, 1)
    ref = _ssim_reference(x, y)
    got = ssim_map(torch.from_numpy(x), torch.from_numpy(y))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-10)
    assert float(ssim(x, y)) == pytest.approx(ref.mean(), abs=1e-10)
    assert float(dssim(x, y)) == pytest.approx((1 - ref.mean()) / 2, abs=1e-10)


def test_ssim_identical_is_one_and_differentiable():
    x = _rand(2, 20, 20, 3).float().requires_grad_(True)
    assert float(ssim(x.detach(), x.detach())) == pytest.approx(1.0, abs=1e-6)
    assert float(dssim(x.detach(), x.detach())) == pytest.approx(0.0, abs=1e-6)
    loss = dssim(x, _rand(2, 20, 20, 3, seed=5).float())
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- LPIPS
def _random_lpips_file(tmp_path, net="alex", fmt="ours"):
    torch.manual_seed(0)
    model = LPIPSNet(net)
    for k in range(5):
        lin = getattr(model, f"lin{k}").model[1]
        lin.weight.data = lin.weight.data.abs()  # LPIPS heads are non-negative
    sd = model.state_dict()
    if fmt == "lpips-module":  # keys of a saved `lpips.LPIPS` module: net.slice<k>.<idx>.<param>
        bounds = [0, 4, 9, 16, 23, 30] if net == "vgg" else [0, 2, 5, 8, 10, 12]
        out = {}
        for key, v in sd.items():
            if key.startswith("features."):
                idx = int(key.split(".")[1])
                s = next(i for i in range(5) if bounds[i] <= idx < bounds[i + 1])
                out[f"net.slice{s + 1}.{idx}.{key.split('.')[2]}"] = v
            else:
                out[key] = v
        out["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
        sd = out
    path = tmp_path / f"lpips_{net}_{fmt}.pth"
    torch.save(sd, path)
    return path


def _pair(h=48, w=40):
    a = _rand(2, h, w, 3, seed=3).float()
    b = (a + 0.3 * _rand(2, h, w, 3, seed=4).float()).clamp(0, 1)
    return a, b


def test_lpips_absent_weights_is_none_with_reason(monkeypatch, tmp_path):
    monkeypatch.delenv(LPIPS_ENV, raising=False)
    a, b = _pair()
    assert lpips(a, b) is None
    ok, reason = lpips_status()
    assert not ok and reason.startswith("unavailable: no LPIPS weights") and LPIPS_ENV in reason
    ok, reason = lpips_status(weights=tmp_path / "missing.pth")
    assert not ok and "not found" in reason


def test_lpips_random_weights_roundtrip(tmp_path, monkeypatch):
    monkeypatch.delenv(LPIPS_ENV, raising=False)
    path = _random_lpips_file(tmp_path, "alex")
    a, b = _pair()
    d = lpips(a, b, net="alex", weights=path)
    assert d is not None and math.isfinite(d) and d > 0
    assert lpips(a, a, net="alex", weights=path) == pytest.approx(0.0, abs=1e-7)
    assert lpips(b, a, net="alex", weights=path) == pytest.approx(d, rel=1e-5)
    assert lpips_status("alex", path)[0]

    monkeypatch.setenv(LPIPS_ENV, str(path))  # the environment variable route
    assert lpips(a, b, net="alex") == pytest.approx(d, rel=1e-6)

    # a saved lpips.LPIPS module's keys load to the same network
    path2 = _random_lpips_file(tmp_path, "alex", fmt="lpips-module")
    assert lpips(a, b, net="alex", weights=path2) == pytest.approx(d, rel=1e-6)

    # a file for another backbone is refused, never evaluated
    assert lpips(a, b, net="vgg", weights=path) is None
    ok, reason = lpips_status("vgg", path)
    assert not ok and "LPIPS-vgg" in reason


def test_lpips_vgg_and_build_weights(tmp_path):
    src = torch.load(_random_lpips_file(tmp_path, "vgg"), weights_only=True)
    backbone = {k: v for k, v in src.items() if k.startswith("features.")}
    backbone["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    heads = {k: v for k, v in src.items() if k.startswith("lin")}
    torch.save(backbone, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg_heads.pth")
    out = build_lpips_weights(tmp_path / "vgg16.pth", tmp_path / "vgg_heads.pth", tmp_path / "w" / "lpips_vgg.pth")
    assert out.is_file()
    a, b = _pair(32, 32)
    d = lpips(a, b, weights=out)
    assert d is not None and math.isfinite(d) and d > 0
    model = load_lpips("vgg", out)
    assert model(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)).shape == (2,)
    with pytest.raises(Exception):  # heads alone are not enough
        build_lpips_weights(tmp_path / "vgg_heads.pth", tmp_path / "vgg_heads.pth", tmp_path / "bad.pth")
    assert not (tmp_path / "bad.pth").exists()


# ----------------------------------------------------------------------------- timing and sizes
def test_time_render_counts_calls():
    calls = []
    stats = time_render(lambda: calls.append(1) or torch.zeros(3), warmup=2, iters=5)
    assert len(calls) == 7
    assert set(stats) >= {"ms_mean", "ms_std", "fps"}
    assert stats["fps"] == pytest.approx(1000.0 / stats["ms_mean"])
    assert stats["ms_std"] >= 0 and stats["ms_min"] <= stats["ms_mean"]


def test_sizes_use_one_mb(tmp_path):
    """One MB (10^6 bytes) for files, folders and model states alike."""
    from splat4d.train.checkpoint import state_size_mb

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"\0" * 10**6)
    (tmp_path / "sub" / "b.bin").write_bytes(b"\0" * 500_000)
    assert file_size_mb(tmp_path / "a.bin") == pytest.approx(1.0)
    assert dir_size_mb(tmp_path) == pytest.approx(1.5)
    assert dir_size_mb(tmp_path / "sub" / "b.bin") == pytest.approx(0.5)
    state = {"w": torch.zeros(250_000)}  # 10^6 bytes of float32 plus torch.save's small header
    assert 1.0 < state_size_mb(state) < 1.01
