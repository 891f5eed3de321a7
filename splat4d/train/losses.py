"""Losses shared by methods."""

from __future__ import annotations

import torch
from torch import Tensor

from splat4d.data.foreground import FOREGROUND_THRESHOLD
from splat4d.metrics import psnr, ssim
from splat4d.train.ssim_cpu import ssim_cpu


def photometric_loss(pred: Tensor, target: Tensor, lambda_ssim: float = 0.2,
                     fused: bool = False) -> tuple[Tensor, dict]:
    """(1 - lambda) L1 + lambda (1 - SSIM) on images [B, H, W, 3]; logs l1 and psnr. `fused` computes SSIM
    for CPU float tensors with the numba kernels of `ssim_cpu` (same value; `metrics.ssim` is its twin)."""
    l1 = (pred - target).abs().mean()
    loss = l1
    if lambda_ssim > 0:
        use_fused = fused and pred.device.type == "cpu" and pred.dtype in (torch.float32, torch.float64)
        s = ssim_cpu(pred, target) if use_fused else ssim(pred, target)
        loss = (1 - lambda_ssim) * l1 + lambda_ssim * (1 - s)
    return loss, {"l1": float(l1.detach()), "psnr": float(psnr(pred.detach(), target))}


def background_opacity(alpha: Tensor, images: Tensor, background: Tensor) -> Tensor:
    """Mean rendered opacity over the pixels whose target shows the background colour (every channel
    within `data.foreground.FOREGROUND_THRESHOLD` of it), divided by all pixels: alpha [C, H, W], images
    [C, H, W, 3], background [3]. A Gaussian of the background's colour in front of the background costs
    no photometric loss in the views that see it there, and covers the scene from other cameras."""
    shows_bg = (images - background.to(images)).abs().amax(-1) <= FOREGROUND_THRESHOLD
    return (alpha * shows_bg.to(alpha)).mean()
