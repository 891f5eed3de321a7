"""Evaluation of a trained method on a split: PSNR, SSIM, D-SSIM, LPIPS (or why not), FPS, size."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from splat4d import metrics
from splat4d.train.checkpoint import state_size_mb


def eval_split(scene) -> str:
    """The split to evaluate on: test, else val, else train."""
    for s in ("test", "val", "train"):
        if scene.splits.get(s):
            return s
    raise ValueError("scene has no views")


@torch.no_grad()
def evaluate(method, scene, split: str | None = None, out_dir: Path | None = None, lpips_weights=None,
             max_images: int | None = None) -> dict:
    """Render every view of `split` at its time and compare with the ground truth.

    Writes `out_dir/NNNN.png` (render | ground truth) when `out_dir` is given. FPS counts only the
    method's render calls (after one warm-up render), not image loading or metrics.
    """
    split = split or eval_split(scene)
    views = scene.split(split)[: max_images or None]
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    bg = torch.tensor(scene.background, dtype=torch.float32, device=device)
    cams = scene.cameras(split).to(device)
    preds, gts = [], []
    method.render(cams[0], float(views[0].time), bg)  # warm-up (JIT, caches)
    render_s = 0.0
    for i, v in enumerate(views):
        t0 = time.perf_counter()
        out = method.render(cams[i], float(v.time), bg)
        if device.type == "cuda":
            torch.cuda.synchronize()
        render_s += time.perf_counter() - t0
        preds.append(out.rgb[0].clamp(0, 1).cpu())
        gts.append(scene.image(v))
    pred, gt = torch.stack(preds), torch.stack(gts)
    if out_dir is not None:
        from splat4d.io.images import save_image, side_by_side

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for i in range(len(views)):
            save_image(out_dir / f"{i:04d}.png", side_by_side(pred[i], gt[i]))
    ok, reason = metrics.lpips_status(weights=lpips_weights)
    result = {
        "split": split,
        "views": len(views),
        "psnr": float(metrics.psnr(pred, gt)),
        "ssim": float(metrics.ssim(pred, gt)),
        "dssim": float(metrics.dssim(pred, gt)),
        "lpips": metrics.lpips(pred, gt, weights=lpips_weights) if ok else None,
        "fps": len(views) / render_s if render_s > 0 else None,
        "size_mb": state_size_mb(method.state_dict()),
        "num_gaussians": method.num_primitives,
    }
    if not ok:
        result["lpips_note"] = reason if reason.startswith("unavailable") else f"unavailable: {reason}"
    if was_training:
        method.train()
    return result
