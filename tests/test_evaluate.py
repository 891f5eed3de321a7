"""Streamed evaluation gives the numbers of evaluating the whole split at once (the implementation before
streaming, kept here as the reference), and writes one PNG per view."""

from pathlib import Path

import pytest
import torch

from splat4d import metrics
from splat4d.data import load_scene
from splat4d.methods.static import StaticConfig, StaticGaussians
from splat4d.train.evaluate import evaluate


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@torch.no_grad()
def _all_at_once(method, scene, split: str, lpips_weights) -> dict:
    """The pre-streaming `evaluate`: stack every render and ground truth, then compute the metrics."""
    views = scene.split(split)
    bg = torch.tensor(scene.background, dtype=torch.float32)
    cams = scene.cameras(split)
    pred = torch.stack([method.render(cams[i], float(v.time), bg).rgb[0].clamp(0, 1) for i, v in enumerate(views)])
    gt = torch.stack([scene.image(v) for v in views])
    return {"psnr": float(metrics.psnr(pred, gt)), "ssim": float(metrics.ssim(pred, gt)),
            "dssim": float(metrics.dssim(pred, gt)), "lpips": metrics.lpips(pred, gt, weights=lpips_weights)}


def test_streamed_evaluation_equals_all_at_once(tmp_path):
    scene = load_scene("synthetic:tiny", background="gray", num_frames=7)  # 7 test views: chunks 3 + 3 + 1
    method = StaticGaussians.from_scene(scene, StaticConfig(sh_degree=1), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    weights = tmp_path / "lpips_vgg_random.pth"
    torch.save(metrics.LPIPSNet("vgg").state_dict(), weights)  # random weights: a number to compare, no meaning
    ref = _all_at_once(method, scene, "test", weights)
    got = evaluate(method, scene, "test", out_dir=tmp_path / "eval", lpips_weights=weights, chunk=3)
    assert got["views"] == 7 and got["lpips"] is not None and "lpips_note" not in got
    for key in ("psnr", "ssim", "dssim", "lpips"):
        assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), key
    assert sorted(p.name for p in Path(tmp_path / "eval").iterdir()) == [f"{i:04d}.png" for i in range(7)]
    whole = evaluate(method, scene, "test", lpips_weights=weights, chunk=100)
    assert whole["psnr"] == pytest.approx(got["psnr"], rel=1e-6)


def test_evaluate_keeps_the_asked_views_renders():
    scene = load_scene("synthetic:tiny", background="gray", num_frames=7)
    method = StaticGaussians.from_scene(scene, StaticConfig(sh_degree=1), torch.Generator().manual_seed(0))
    keep = dict.fromkeys((0, 4, 6))  # 4 and 6 fall in the second and third chunks of 3
    evaluate(method, scene, "test", chunk=3, keep=keep)
    cams, views = scene.cameras("test"), scene.split("test")
    bg = torch.tensor(scene.background, dtype=torch.float32)
    assert list(keep) == [0, 4, 6]
    for i, img in keep.items():
        with torch.no_grad():
            want = method.render(cams[i], float(views[i].time), bg).rgb[0].clamp(0, 1)
        assert torch.equal(img, want), i
