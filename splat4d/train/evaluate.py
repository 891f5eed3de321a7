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
             max_images: int | None = None, chunk: int = 8, keep: dict | None = None) -> dict:
    """Render every view of `split` at its time and compare with the ground truth.

    Views are rendered `chunk` at a time (renders and ground truths of one chunk in memory) and scored
    one image at a time, summing per-image PSNR, SSIM and LPIPS; for images of one size the results
    equal the metrics of the whole split at once (PSNR and LPIPS are means over images, SSIM a mean
    over pixels, channels and images).
    Writes `out_dir/NNNN.png` (render | ground truth) when `out_dir` is given. FPS counts only the
    method's render calls (after one warm-up render), not image loading or metrics.
    `keep`, a dict whose keys are view indices, gets each of those views' render [H, W, 3] as its value.
    """
    split = split or eval_split(scene)
    views = scene.split(split)[: max_images or None]
    was_training = method.training
    method.eval()
    device = method.device
    bg = torch.tensor(scene.background, dtype=torch.float32, device=device)
    cams = scene.cameras(split).to(device)
    ok, reason = metrics.lpips_status(weights=lpips_weights)
    if out_dir is not None:
        from splat4d.io.images import save_image, side_by_side

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    method.render(cams[0], float(views[0].time), bg)  # warm-up (JIT, caches)
    render_s, psnr_sum, ssim_sum, lpips_sum = 0.0, 0.0, 0.0, 0.0
    for first in range(0, len(views), max(int(chunk), 1)):
        preds, gts = [], []
        for i in range(first, min(first + max(int(chunk), 1), len(views))):
            t0 = time.perf_counter()
            out = method.render(cams[i], float(views[i].time), bg)
            if device.type == "cuda":
                torch.cuda.synchronize()
            render_s += time.perf_counter() - t0
            preds.append(out.rgb[0].clamp(0, 1).cpu())
            gts.append(scene.image(views[i]))
        for k, (p, g) in enumerate(zip(preds, gts)):  # one image at a time: SSIM and LPIPS hold many
            if keep is not None and first + k in keep:
                keep[first + k] = p
            psnr_sum += float(metrics.psnr(p, g))      # full-size intermediates per image
            ssim_sum += float(metrics.ssim(p, g))
            if ok:
                lpips_sum += metrics.lpips(p, g, weights=lpips_weights)
            if out_dir is not None:
                save_image(out_dir / f"{first + k:04d}.png", side_by_side(p, g))
    n = len(views)
    result = {
        "split": split,
        "views": n,
        "psnr": psnr_sum / n,
        "ssim": ssim_sum / n,
        "dssim": (1.0 - ssim_sum / n) / 2.0,
        "lpips": lpips_sum / n if ok else None,
        "fps": n / render_s if render_s > 0 else None,
        "size_mb": state_size_mb(method.state_dict()),
        "num_gaussians": method.num_primitives,
        **method.describe(),
    }
    if not ok:
        result["lpips_note"] = reason if reason.startswith("unavailable") else f"unavailable: {reason}"
    if was_training:
        method.train()
    return result
