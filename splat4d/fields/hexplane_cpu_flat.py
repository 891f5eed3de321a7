"""The previous fused CPU kernels of the HexPlane lookup (numba), over a flat channel-last copy of the
planes. Used when `HexPlane(fused=False)` (`GaussianConfig.fused_cpu` False), so that
`benchmarks/profile_train.py --compare` measures the path as it was; `hexplane_cpu` is the current one.

One call samples every plane of every scale, multiplies the six features of each scale and writes the
concatenated result, instead of 6 x scales `grid_sample` calls and products in torch. Same conventions as
`HexPlane`'s torch path (its twin and test oracle): bilinear, align_corners=True, border padding (a
coordinate outside [-1, 1] reads the edge texel and gets no gradient along that axis).

Planes are copied into one flat float32 buffer, channel-last (plane p holds H x W x C values from its
offset, so the C values of a texel are contiguous), with a table of rows (offset, H, W, a, b): plane p
reads coordinate a along W and coordinate b along H. The torch parameters keep the [1, C, H, W] layout.

Backward first forms d loss / d samples, then two passes in which no two threads write to the same
value: gradients of the coordinates are parallel over points; gradients of the planes are parallel over
planes (each plane's texels belong to one thread).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

PLANES_PER_SCALE = 6


@njit(cache=True, inline="always")
def _axis(u, size):
    """(i0, i1, fraction, d position / du) of normalised coordinate u on an axis of `size` texels; the
    derivative is 0 where border padding clamps u (no gradient along this axis)."""
    if size == 1:
        return 0, 0, 0.0, 0.0
    x = (u + 1.0) * 0.5 * (size - 1)
    scale = 0.5 * (size - 1)
    if not (x > 0.0):  # also catches NaN
        return 0, 1, 0.0, 0.0
    if x >= size - 1:
        return size - 2, size - 1, 1.0, 0.0
    i0 = int(np.floor(x))  # <= size - 2 since x < size - 1
    return i0, i0 + 1, x - i0, scale


@njit(parallel=True, cache=True)
def hexplane_lookup(meta, pts, C):
    """Where every point reads every plane: flat offsets of channel 0 of the four texels idx [N, P, 4]
    (corners 00, 01, 10, 11) and frac [N, P, 4] = (fx, fy, dx/du, dy/dv)."""
    N, P = pts.shape[0], meta.shape[0]
    idx = np.empty((N, P, 4), dtype=np.int64)
    frac = np.empty((N, P, 4), dtype=np.float32)
    for n in prange(N):
        for p in range(P):
            off, H, W, a, b = meta[p, 0], meta[p, 1], meta[p, 2], meta[p, 3], meta[p, 4]
            x0, x1, fx, dx = _axis(pts[n, a], W)
            y0, y1, fy, dy = _axis(pts[n, b], H)
            idx[n, p, 0], idx[n, p, 1] = off + (y0 * W + x0) * C, off + (y0 * W + x1) * C
            idx[n, p, 2], idx[n, p, 3] = off + (y1 * W + x0) * C, off + (y1 * W + x1) * C
            frac[n, p, 0], frac[n, p, 1], frac[n, p, 2], frac[n, p, 3] = fx, fy, dx, dy
    return idx, frac


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_forward(flat, idx, frac, num_scales, C):
    """(features [N, num_scales * C], samples [N, P, C]): per scale the product of its six samples."""
    N, P = idx.shape[0], idx.shape[1]
    vals = np.empty((N, P, C), dtype=np.float32)
    out = np.empty((N, num_scales * C), dtype=np.float32)
    for n in prange(N):
        for p in range(P):
            fx, fy = frac[n, p, 0], frac[n, p, 1]
            one = np.float32(1.0)
            w00, w01, w10, w11 = (one - fx) * (one - fy), fx * (one - fy), (one - fx) * fy, fx * fy
            i00, i01, i10, i11 = idx[n, p, 0], idx[n, p, 1], idx[n, p, 2], idx[n, p, 3]
            row = vals[n, p]
            for c in range(C):
                row[c] = w00 * flat[i00 + c] + w01 * flat[i01 + c] + w10 * flat[i10 + c] + w11 * flat[i11 + c]
        for s in range(num_scales):
            for c in range(C):
                prod = np.float32(1.0)
                for k in range(PLANES_PER_SCALE):
                    prod *= vals[n, s * PLANES_PER_SCALE + k, c]
                out[n, s * C + c] = prod
    return out, vals


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_grad_samples(vals, grad_out, num_scales, C):
    """d loss / d samples [N, P, C]: the feature gradient times the product of the scale's other five
    samples (prefix and suffix products, no division, so zeros are fine)."""
    N, P = vals.shape[0], vals.shape[1]
    g_vals = np.empty((N, P, C), dtype=np.float32)
    for n in prange(N):
        pre = np.empty(PLANES_PER_SCALE + 1, dtype=np.float32)
        suf = np.empty(PLANES_PER_SCALE + 1, dtype=np.float32)
        for s in range(num_scales):
            base = s * PLANES_PER_SCALE
            for c in range(C):
                pre[0] = 1.0
                suf[PLANES_PER_SCALE] = 1.0
                for k in range(PLANES_PER_SCALE):
                    pre[k + 1] = pre[k] * vals[n, base + k, c]
                    j = PLANES_PER_SCALE - 1 - k
                    suf[j] = suf[j + 1] * vals[n, base + j, c]
                g = grad_out[n, s * C + c]
                for k in range(PLANES_PER_SCALE):
                    g_vals[n, base + k, c] = g * pre[k] * suf[k + 1]
    return g_vals


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_backward_points(flat, meta, idx, frac, g_vals, C):
    """d loss / d pts [N, 4] (normalised coordinates) from d loss / d samples."""
    N, P = idx.shape[0], idx.shape[1]
    g_pts = np.zeros((N, 4), dtype=np.float32)
    one = np.float32(1.0)
    for n in prange(N):
        for p in range(P):
            fx, fy = frac[n, p, 0], frac[n, p, 1]
            i00, i01, i10, i11 = idx[n, p, 0], idx[n, p, 1], idx[n, p, 2], idx[n, p, 3]
            gx = np.float32(0.0)
            gy = np.float32(0.0)
            for c in range(C):
                gv = g_vals[n, p, c]
                v00, v01, v10, v11 = flat[i00 + c], flat[i01 + c], flat[i10 + c], flat[i11 + c]
                gx += gv * ((one - fy) * (v01 - v00) + fy * (v11 - v10))
                gy += gv * ((one - fx) * (v10 - v00) + fx * (v11 - v01))
            g_pts[n, meta[p, 3]] += gx * frac[n, p, 2]
            g_pts[n, meta[p, 4]] += gy * frac[n, p, 3]
    return g_pts


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_backward_planes(size, idx, frac, g_vals, C):
    """d loss / d flat planes from d loss / d samples; parallel over planes (each plane's texels belong
    to one thread, and every plane has the same work: one sample per point)."""
    N, P = idx.shape[0], idx.shape[1]
    g_flat = np.zeros(size, dtype=np.float32)
    one = np.float32(1.0)
    for p in prange(P):
        for n in range(N):
            fx, fy = frac[n, p, 0], frac[n, p, 1]
            w00, w01, w10, w11 = (one - fx) * (one - fy), fx * (one - fy), (one - fx) * fy, fx * fy
            i00, i01, i10, i11 = idx[n, p, 0], idx[n, p, 1], idx[n, p, 2], idx[n, p, 3]
            for c in range(C):
                gv = g_vals[n, p, c]
                g_flat[i00 + c] += gv * w00
                g_flat[i01 + c] += gv * w01
                g_flat[i10 + c] += gv * w10
                g_flat[i11 + c] += gv * w11
    return g_flat


@njit(cache=True)
def to_channel_last(src, dst, off):
    """Copy a [C, H, W] plane into dst[off:] as [H, W, C]. Serial: a dozen short parallel launches per
    call cost more than they save, badly so when the cores are busy."""
    C, H, W = src.shape
    for h in range(H):
        for w in range(W):
            base = off + (h * W + w) * C
            for c in range(C):
                dst[base + c] = src[c, h, w]


@njit(cache=True)
def from_channel_last(src, off, dst):
    """Copy src[off:] laid out as [H, W, C] into the [C, H, W] array dst (serial, as `to_channel_last`)."""
    C, H, W = dst.shape
    for c in range(C):
        for h in range(H):
            for w in range(W):
                dst[c, h, w] = src[off + (h * W + w) * C + c]


def plane_table(planes: list[Tensor], pairs) -> np.ndarray:
    """Rows (offset, H, W, a, b) for planes [1, C, H, W] laid end to end, scale-major (6 per scale)."""
    rows, off = [], 0
    for i, p in enumerate(planes):
        a, b = pairs[i % PLANES_PER_SCALE]
        rows.append((off, p.shape[-2], p.shape[-1], a, b))
        off += p.numel()
    return np.asarray(rows, dtype=np.int64)


class HexPlaneCPU(torch.autograd.Function):
    """pts [N, 4] in [-1, 1] and the planes of every scale -> features [N, scales * C] (float32)."""

    @staticmethod
    def forward(ctx, pts: Tensor, meta: np.ndarray, num_scales: int, *planes: Tensor) -> Tensor:
        C = planes[0].shape[1]
        # channel-last copy ([H, W, C] per plane) so that the C values of a texel are contiguous
        flat = np.empty(int(meta[-1, 0]) + planes[-1].numel(), dtype=np.float32)
        for p, row in zip(planes, meta):
            to_channel_last(p.detach()[0].float().contiguous().numpy(), flat, int(row[0]))
        pts_np = pts.detach().float().contiguous().numpy()
        idx, frac = hexplane_lookup(meta, pts_np, C)
        out, vals = hexplane_forward(flat, idx, frac, num_scales, C)
        ctx.arrays = (flat, meta, idx, frac, vals, num_scales, C)
        ctx.shapes = [p.shape for p in planes]
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        flat, meta, idx, frac, vals, num_scales, C = ctx.arrays
        g_vals = hexplane_grad_samples(vals, grad_out.detach().float().contiguous().numpy(), num_scales, C)
        g_pts = None
        if ctx.needs_input_grad[0]:
            g_pts = torch.from_numpy(hexplane_backward_points(flat, meta, idx, frac, g_vals, C))
        g_planes = [None] * len(ctx.shapes)
        if any(ctx.needs_input_grad[3:]):
            g_flat = hexplane_backward_planes(flat.shape[0], idx, frac, g_vals, C)
            g_planes = []
            for shape, row in zip(ctx.shapes, meta):
                out = np.empty(shape[1:], dtype=np.float32)
                from_channel_last(g_flat, int(row[0]), out)
                g_planes.append(torch.from_numpy(out)[None])
        return (g_pts, None, None, *g_planes)

