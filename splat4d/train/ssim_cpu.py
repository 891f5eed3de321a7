"""Fused CPU SSIM (numba) with a hand-written backward, for the training loss.

Same definition as `metrics.ssim` (its torch twin and test oracle): 11-tap Gaussian window (sigma 1.5)
applied separably with zero padding to 'same' size, C1 = 0.01^2, C2 = 0.03^2, mean over images,
channels and pixels. The torch version runs ~60 ops (a grouped convolution over 5 stacked statistics,
permutes, products) forward and backward; here one pass filters the five statistics and forms SSIM and
its derivatives with respect to the three statistics that depend on the prediction (mu_x, E[x^2],
E[xy]); the backward filters those three maps once more (the symmetric window is its own adjoint) and
combines them per pixel:
    dSSIM/dx = G*(dS/dmu_x) + 2 x G*(dS/dE[x^2]) + y G*(dS/dE[xy]).
Images are [B, H, W, C] as rendered; work runs on planar copies [B*C, H, W], parallel over rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

C1, C2 = 0.01**2, 0.03**2


def gaussian_taps(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D window (float64), as `metrics._gaussian_window`."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


@njit(cache=True, fastmath=True)
def _filter_row(src, dst, taps, pad):
    """dst = src correlated with taps along its last axis, zero padding ('same'). The row is copied into
    the zero-bordered scratch `pad` first: shifted adds over the full width then vectorise."""
    W = src.shape[0]
    r = taps.shape[0] // 2
    for j in range(W):
        pad[r + j] = src[j]
        dst[j] = 0.0
    for t in range(taps.shape[0]):
        w = taps[t]
        for j in range(W):
            dst[j] += w * pad[j + t]


@njit(parallel=True, cache=True, fastmath=True)
def _filter_rows(maps, taps):
    """Horizontal pass: every row of maps [K, H, W] filtered along W (parallel over maps)."""
    K, H, W = maps.shape
    out = np.empty_like(maps)
    for k in prange(K):
        pad = np.zeros(W + taps.shape[0] - 1, dtype=maps.dtype)
        for i in range(H):
            _filter_row(maps[k, i], out[k, i], taps, pad)
    return out


@njit(cache=True, fastmath=True)
def _filter_col(src, k, i, taps, acc):
    """acc[:] = rows around i of src[k] (an [K, H, W] stack) combined with taps: the vertical pass at row i."""
    H = src.shape[1]
    r = taps.shape[0] // 2
    for j in range(acc.shape[0]):
        acc[j] = 0.0
    for ii in range(max(0, i - r), min(H, i + r + 1)):
        t = taps[ii - i + r]
        row = src[k, ii]
        for j in range(acc.shape[0]):
            acc[j] += t * row[j]


@njit(parallel=True, cache=True, fastmath=True)
def ssim_forward(x, y, taps, want_grad):
    """x, y [K, H, W] planar images. Returns (sum of the SSIM map, d map / d stats [3, K, H, W] for
    mu_x, E[x^2], E[xy] (empty unless want_grad))."""
    K, H, W = x.shape
    stats = np.empty((5 * K, H, W), dtype=x.dtype)
    for k in prange(K):
        for i in range(H):
            for j in range(W):
                a, b = x[k, i, j], y[k, i, j]
                stats[k, i, j] = a
                stats[K + k, i, j] = b
                stats[2 * K + k, i, j] = a * a
                stats[3 * K + k, i, j] = b * b
                stats[4 * K + k, i, j] = a * b
    rows = _filter_rows(stats, taps)  # [5K, H, W]
    d = np.empty((3, K, H, W) if want_grad else (3, 0, 0, 0), dtype=x.dtype)
    part = np.zeros(K * H)
    for job in prange(K * H):
        k = job // H
        i = job % H
        mx = np.empty(W, dtype=x.dtype)
        my = np.empty(W, dtype=x.dtype)
        exx = np.empty(W, dtype=x.dtype)
        eyy = np.empty(W, dtype=x.dtype)
        exy = np.empty(W, dtype=x.dtype)
        _filter_col(rows, k, i, taps, mx)
        _filter_col(rows, K + k, i, taps, my)
        _filter_col(rows, 2 * K + k, i, taps, exx)
        _filter_col(rows, 3 * K + k, i, taps, eyy)
        _filter_col(rows, 4 * K + k, i, taps, exy)
        s = 0.0
        for j in range(W):
            ux, uy = mx[j], my[j]
            sxx = exx[j] - ux * ux
            syy = eyy[j] - uy * uy
            sxy = exy[j] - ux * uy
            a1 = 2.0 * ux * uy + C1
            a2 = 2.0 * sxy + C2
            b1 = ux * ux + uy * uy + C1
            b2 = sxx + syy + C2
            inv = 1.0 / (b1 * b2)
            S = a1 * a2 * inv
            s += S
            if want_grad:
                d_exx = -S / b2
                d_exy = 2.0 * a1 * inv
                d_mx = 2.0 * uy * a2 * inv - 2.0 * ux * S / b1 - 2.0 * ux * d_exx - uy * d_exy
                d[0, k, i, j] = d_mx
                d[1, k, i, j] = d_exx
                d[2, k, i, j] = d_exy
        part[job] = s
    return part.sum(), d


@njit(parallel=True, cache=True, fastmath=True)
def ssim_backward(x, y, d, taps, scale):
    """d SSIM-sum / d x [K, H, W] times `scale`, from the derivative maps of `ssim_forward`."""
    K, H, W = x.shape
    rows = _filter_rows(d.reshape((3 * K, H, W)), taps)  # [3K, H, W]
    g = np.empty_like(x)
    for job in prange(K * H):
        k = job // H
        i = job % H
        f0 = np.empty(W, dtype=x.dtype)
        f1 = np.empty(W, dtype=x.dtype)
        f2 = np.empty(W, dtype=x.dtype)
        _filter_col(rows, k, i, taps, f0)
        _filter_col(rows, K + k, i, taps, f1)
        _filter_col(rows, 2 * K + k, i, taps, f2)
        for j in range(W):
            g[k, i, j] = scale * (f0[j] + 2.0 * x[k, i, j] * f1[j] + y[k, i, j] * f2[j])
    return g


def _planar(img: Tensor) -> np.ndarray:
    """[B, H, W, C] -> contiguous [B*C, H, W] numpy array."""
    B, H, W, C = img.shape
    return img.detach().permute(0, 3, 1, 2).reshape(B * C, H, W).contiguous().numpy()


class _SSIMCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, img: Tensor, ref: Tensor) -> Tensor:
        x, y = _planar(img), _planar(ref.to(img.dtype))
        taps = gaussian_taps().astype(x.dtype)
        total, d = ssim_forward(x, y, taps, ctx.needs_input_grad[0])
        ctx.arrays = (x, y, d, taps, img.shape)
        return torch.tensor(total / x.size, dtype=img.dtype, device="cpu")

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y, d, taps, shape = ctx.arrays
        B, H, W, C = shape
        gx = ssim_backward(x, y, d, taps, x.dtype.type(float(g) / x.size))
        grad = torch.from_numpy(gx).reshape(B, C, H, W).permute(0, 2, 3, 1)
        return grad, None


def ssim_cpu(img: Tensor, ref: Tensor) -> Tensor:
    """Mean SSIM of images [B, H, W, C] (CPU float32/float64; gradient reaches `img` only), equal to
    `metrics.ssim(img, ref)` up to float rounding. 0-dim tensor."""
    if img.dim() != 4 or img.shape != ref.shape:
        raise ValueError(f"ssim_cpu needs two [B, H, W, C] images of one shape, got {tuple(img.shape)} and "
                         f"{tuple(ref.shape)}")
    if math.prod(img.shape) == 0:
        raise ValueError("ssim_cpu got empty images")
    return _SSIMCPU.apply(img, ref)
