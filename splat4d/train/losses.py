"""Losses shared by methods."""

from __future__ import annotations

from torch import Tensor

from splat4d.metrics import psnr, ssim


def photometric_loss(pred: Tensor, target: Tensor, lambda_ssim: float = 0.2) -> tuple[Tensor, dict]:
    """(1 - lambda) L1 + lambda (1 - SSIM) on images [B, H, W, 3]; logs l1 and psnr."""
    l1 = (pred - target).abs().mean()
    loss = l1
    if lambda_ssim > 0:
        loss = (1 - lambda_ssim) * l1 + lambda_ssim * (1 - ssim(pred, target))
    return loss, {"l1": float(l1.detach()), "psnr": float(psnr(pred.detach(), target))}
