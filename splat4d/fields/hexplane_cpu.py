"""Fused CPU kernels for the HexPlane lookup and regularisers (numba), with their autograd Functions.

One call samples every plane of every scale, multiplies the six features of each scale and writes the
concatenated result, instead of 6 x scales `grid_sample` calls and products in torch. Same conventions as
`HexPlane`'s torch path (its twin and test oracle): bilinear, align_corners=True, border padding (a
coordinate outside [-1, 1] reads the edge texel and gets no gradient along that axis).

The planes are read in place: `HexPlane(fused=True)` stores its [1, C, H, W] parameters channels-last
(torch.channels_last), so `plane[0].permute(1, 2, 0)` is a contiguous [H, W, C] array whose C values of
a texel are adjacent, and the kernels take the planes as a tuple of such arrays with a table of rows
(H, W, a, b): plane p reads coordinate a along W and coordinate b along H. Gradients come back in the same
layout, so nothing is copied either way (a plane in another layout is copied once per call).

Backward: a pass parallel over points forms d loss / d samples (prefix and suffix products) and the
gradients of the coordinates; a pass parallel over planes scatters the samples' gradients into the
planes (each plane's texels belong to one thread), so no two threads write to the same value.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

PLANES_PER_SCALE = 6


@njit(cache=True)
def _axis(u, size):
    """(i0, i1, fraction, d position / du) of normalised coordinate u on an axis of `size` texels; the
    derivative is 0 where border padding clamps u (no gradient along this axis)."""
    if size == 1:
        return 0, 0, np.float32(0.0), np.float32(0.0)
    x = np.float32((u + np.float32(1.0)) * np.float32(0.5) * np.float32(size - 1))
    scale = np.float32(0.5 * (size - 1))
    if not (x > 0.0):  # also catches NaN
        return 0, 1, np.float32(0.0), np.float32(0.0)
    if x >= size - 1:
        return size - 2, size - 1, np.float32(1.0), np.float32(0.0)
    i0 = int(np.floor(x))  # <= size - 2 since x < size - 1
    return i0, i0 + 1, np.float32(x - i0), scale


@njit(cache=True)
def spatial_order(pts):
    """Order of the points along a 3-D Morton curve over (x, y, z) (7 bits per axis). The kernels take
    the points in this order, so that consecutive points read and write neighbouring texels and the
    planes' gathers and scatters mostly hit the cache (the Gaussians come in no spatial order)."""
    N = pts.shape[0]
    code = np.zeros(N, dtype=np.int64)
    for n in range(N):
        key = 0
        for a in range(3):
            q = int((min(max(pts[n, a], -1.0), 1.0) + 1.0) * 63.99)  # 0..127
            for bit in range(7):
                key |= ((q >> bit) & 1) << (3 * bit + a)
        code[n] = key
    return np.argsort(code, kind="mergesort")


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_forward(planes, meta, pts, num_scales):
    """(features [N, num_scales * C], samples [N, P, C]): per scale the product of its six samples.

    planes: tuple of P [H, W, C] float32 arrays; meta [P, 4] rows (H, W, a, b); pts [N, 4] in [-1, 1]."""
    N, P = pts.shape[0], meta.shape[0]
    C = planes[0].shape[2]
    vals = np.empty((N, P, C), dtype=np.float32)
    out = np.empty((N, num_scales * C), dtype=np.float32)
    one = np.float32(1.0)
    for n in prange(N):
        for p in range(P):
            x0, x1, fx, _ = _axis(pts[n, meta[p, 2]], meta[p, 1])
            y0, y1, fy, _ = _axis(pts[n, meta[p, 3]], meta[p, 0])
            w00, w01, w10, w11 = (one - fx) * (one - fy), fx * (one - fy), (one - fx) * fy, fx * fy
            pl = planes[p]
            r00, r01, r10, r11, v = pl[y0, x0], pl[y0, x1], pl[y1, x0], pl[y1, x1], vals[n, p]
            for c in range(C):
                v[c] = w00 * r00[c] + w01 * r01[c] + w10 * r10[c] + w11 * r11[c]
        for s in range(num_scales):
            for c in range(C):
                prod = one
                for k in range(PLANES_PER_SCALE):
                    prod *= vals[n, s * PLANES_PER_SCALE + k, c]
                out[n, s * C + c] = prod
    return out, vals


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_backward_points(planes, meta, pts, vals, grad_out, num_scales, need_pts):
    """(d loss / d pts [N, 4], d loss / d samples [N, P, C]). A sample's gradient is the feature gradient
    times the product of its scale's other five samples (prefix and suffix products, no division, so
    zeros are fine); the coordinates' gradient is skipped unless `need_pts`."""
    N, P = pts.shape[0], meta.shape[0]
    C = planes[0].shape[2]
    g_vals = np.empty((N, P, C), dtype=np.float32)
    g_pts = np.zeros((N, 4), dtype=np.float32)
    one = np.float32(1.0)
    for n in prange(N):
        for s in range(num_scales):
            b = s * PLANES_PER_SCALE
            for c in range(C):  # six planes per scale, written out so the loop over channels vectorises
                v0, v1, v2 = vals[n, b, c], vals[n, b + 1, c], vals[n, b + 2, c]
                v3, v4, v5 = vals[n, b + 3, c], vals[n, b + 4, c], vals[n, b + 5, c]
                g = grad_out[n, s * C + c]
                p1 = g * v0
                p2 = p1 * v1
                p3 = p2 * v2
                p4 = p3 * v3
                s4 = v4 * v5
                s3 = v3 * s4
                s2 = v2 * s3
                g_vals[n, b, c] = g * v1 * s2
                g_vals[n, b + 1, c] = p1 * s2
                g_vals[n, b + 2, c] = p2 * s3
                g_vals[n, b + 3, c] = p3 * s4
                g_vals[n, b + 4, c] = p4 * v5
                g_vals[n, b + 5, c] = p4 * v4
        if not need_pts:
            continue
        for p in range(P):
            a, b = meta[p, 2], meta[p, 3]
            x0, x1, fx, dx = _axis(pts[n, a], meta[p, 1])
            y0, y1, fy, dy = _axis(pts[n, b], meta[p, 0])
            if dx == 0.0 and dy == 0.0:
                continue
            pl = planes[p]
            r00, r01, r10, r11, gv = pl[y0, x0], pl[y0, x1], pl[y1, x0], pl[y1, x1], g_vals[n, p]
            gx = np.float32(0.0)
            gy = np.float32(0.0)
            for c in range(C):
                v00, v01, v10, v11 = r00[c], r01[c], r10[c], r11[c]
                gx += gv[c] * ((one - fy) * (v01 - v00) + fy * (v11 - v10))
                gy += gv[c] * ((one - fx) * (v10 - v00) + fx * (v11 - v01))
            g_pts[n, a] += gx * dx
            g_pts[n, b] += gy * dy
    return g_pts, g_vals


@njit(parallel=True, cache=True, fastmath=True)
def hexplane_backward_planes(grads, meta, pts, g_vals):
    """Scatter d loss / d samples into the zeroed [H, W, C] plane gradients `grads` (a tuple like the
    planes); parallel over planes: every plane has the same work, one sample per point."""
    N, P = pts.shape[0], meta.shape[0]
    C = g_vals.shape[2]
    one = np.float32(1.0)
    for p in prange(P):
        g = grads[p]
        for n in range(N):
            x0, x1, fx, _ = _axis(pts[n, meta[p, 2]], meta[p, 1])
            y0, y1, fy, _ = _axis(pts[n, meta[p, 3]], meta[p, 0])
            w00, w01, w10, w11 = (one - fx) * (one - fy), fx * (one - fy), (one - fx) * fy, fx * fy
            gv = g_vals[n, p]
            # one loop per corner: each is a single store stream, which vectorises over channels
            for c in range(C):
                g[y0, x0, c] += gv[c] * w00
            for c in range(C):
                g[y0, x1, c] += gv[c] * w01
            for c in range(C):
                g[y1, x0, c] += gv[c] * w10
            for c in range(C):
                g[y1, x1, c] += gv[c] * w11


def plane_arrays(planes: list[Tensor]) -> tuple[np.ndarray, ...]:
    """[H, W, C] float32 numpy views of [1, C, H, W] planes (copies of planes not stored channels-last)."""
    return tuple(np.ascontiguousarray(p.detach()[0].permute(1, 2, 0).float().numpy()) for p in planes)


def _grad_buffers(arrays: tuple[np.ndarray, ...], zero: bool) -> tuple[list[Tensor], tuple[np.ndarray, ...]]:
    """Gradient tensors [1, C, H, W] with exactly the strides of a channels-last parameter, and [H, W, C]
    numpy views of them for the kernels to write. torch owns the memory, so autograd's AccumulateGrad
    takes such a gradient as the parameter's .grad without copying it (it copies numpy-owned ones)."""
    bufs = [torch.empty((1, a.shape[2], a.shape[0], a.shape[1]), dtype=torch.float32, device="cpu",
                        memory_format=torch.channels_last) for a in arrays]
    if zero:
        for b in bufs:
            b.zero_()
    return bufs, tuple(b.permute(0, 2, 3, 1).numpy()[0] for b in bufs)


def plane_table(planes: list[Tensor], pairs) -> np.ndarray:
    """Rows (H, W, a, b) of planes [1, C, H, W], scale-major (6 per scale, in the order of `pairs`)."""
    rows = [(p.shape[-2], p.shape[-1], *pairs[i % PLANES_PER_SCALE]) for i, p in enumerate(planes)]
    return np.asarray(rows, dtype=np.int64)


class HexPlaneCPU(torch.autograd.Function):
    """pts [N, 4] in [-1, 1] and the planes of every scale -> features [N, scales * C] (float32)."""

    @staticmethod
    def forward(ctx, pts: Tensor, meta: np.ndarray, num_scales: int, *planes: Tensor) -> Tensor:
        arrays = plane_arrays(planes)
        pts_np = pts.detach().float().contiguous().numpy()
        order = spatial_order(pts_np)
        pts_np = pts_np[order]  # kernels work in spatial order; results go back to the caller's
        out_sorted, vals = hexplane_forward(arrays, meta, pts_np, num_scales)
        out = np.empty_like(out_sorted)
        out[order] = out_sorted
        ctx.arrays = (arrays, meta, pts_np, order, vals, num_scales)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        arrays, meta, pts_np, order, vals, num_scales = ctx.arrays
        g = grad_out.detach().float().numpy()[order]
        # points whose features get no gradient (Gaussians that reach no pixel) add nothing: skip them
        active = np.flatnonzero(g.any(axis=1))
        if len(active) < len(g):
            order, pts_np, vals, g = order[active], pts_np[active], vals[active], g[active]
        g_pts_sorted, g_vals = hexplane_backward_points(arrays, meta, pts_np, vals, g, num_scales,
                                                        ctx.needs_input_grad[0])
        g_pts = np.zeros((grad_out.shape[0], 4), dtype=np.float32)
        g_pts[order] = g_pts_sorted
        g_planes = [None] * len(arrays)
        if any(ctx.needs_input_grad[3:]):
            g_planes, grads = _grad_buffers(arrays, zero=True)
            hexplane_backward_planes(grads, meta, pts_np, g_vals)
        return (torch.from_numpy(g_pts) if ctx.needs_input_grad[0] else None, None, None, *g_planes)


# ----------------------------------------------------------------------------- regularisers
@njit(cache=True, fastmath=True)
def _tv_row(a, g, i, kh, kw):
    """Row i of g = d/da of kh/2 sum(dh^2) + kw/2 sum(dw^2) (first differences along H and W) for an
    [H, W, C] plane; returns the row's share of the two sums of squares (differences to the previous
    row and column). One write per value: the inner loop over channels vectorises."""
    H, W, C = a.shape
    sh = 0.0
    sw = 0.0
    for j in range(W):
        for c in range(C):
            x = a[i, j, c]
            v = 0.0
            if i > 0:
                d = x - a[i - 1, j, c]
                sh += d * d
                v += kh * d
            if i < H - 1:
                v -= kh * (a[i + 1, j, c] - x)
            if j > 0:
                d = x - a[i, j - 1, c]
                sw += d * d
                v += kw * d
            if j < W - 1:
                v -= kw * (a[i, j + 1, c] - x)
            g[i, j, c] = v
    return sh, sw


@njit(cache=True, fastmath=True)
def _smooth_l1_row(a, g, i, ks, kl):
    """Row i of g = d/da of ks/2 sum(d2^2) (second differences along H) + kl sum|1 - a|; returns the
    row's share of both sums (the second difference starting at row i)."""
    H, W, C = a.shape
    s2 = 0.0
    s1 = 0.0
    for j in range(W):
        for c in range(C):
            x = a[i, j, c]
            v = 0.0
            if H > 2:
                if i <= H - 3:
                    d = x - 2.0 * a[i + 1, j, c] + a[i + 2, j, c]
                    s2 += d * d
                    v += ks * d
                if 1 <= i <= H - 2:
                    v -= 2.0 * ks * (a[i - 1, j, c] - 2.0 * x + a[i + 1, j, c])
                if i >= 2:
                    v += ks * (a[i - 2, j, c] - 2.0 * a[i - 1, j, c] + x)
            e = 1.0 - x
            s1 += abs(e)
            if e > 0.0:
                v -= kl
            elif e < 0.0:
                v += kl
            g[i, j, c] = v
    return s2, s1


@njit(parallel=True, cache=True)
def plane_regularisers(planes, kinds, w_tv, w_smooth, w_l1, grads):
    """Weighted HexPlane regularisers and their gradients in one pass, parallel over plane rows.

    planes: tuple of [H, W, C] float32 arrays; kinds[p] 0 for a space plane (total variation, as
    `hexplane.plane_tv`), 1 for a time plane (second-difference smoothness along H, as
    `hexplane.plane_smoothness`, plus mean |1 - plane|). Writes d value / d plane into `grads` (same
    shapes) and returns w_tv sum(tv) + w_smooth sum(smoothness) + w_l1 sum(l1); sums run in float64."""
    P = len(planes)
    start = np.zeros(P + 1, dtype=np.int64)
    for p in range(P):
        start[p + 1] = start[p] + planes[p].shape[0]
    part = np.zeros(start[P])
    for job in prange(start[P]):
        p = 0
        while start[p + 1] <= job:
            p += 1
        i = job - start[p]
        a = planes[p]
        H, W, C = a.shape
        if kinds[p] == 0:  # 2 mean(dh^2) + 2 mean(dw^2); an axis of one texel adds nothing
            nh = C * (H - 1) * W
            nw = C * H * (W - 1)
            kh = 4.0 * w_tv / nh if nh > 0 else 0.0
            kw = 4.0 * w_tv / nw if nw > 0 else 0.0
            sh, sw = _tv_row(a, grads[p], i, kh, kw)
            part[job] = (2.0 * w_tv * sh / nh if nh > 0 else 0.0) + (2.0 * w_tv * sw / nw if nw > 0 else 0.0)
        else:  # mean(d2^2) + mean|1 - x|
            n2 = C * (H - 2) * W
            n1 = C * H * W
            ks = 2.0 * w_smooth / n2 if n2 > 0 else 0.0
            s2, s1 = _smooth_l1_row(a, grads[p], i, ks, w_l1 / n1)
            part[job] = (w_smooth * s2 / n2 if n2 > 0 else 0.0) + w_l1 * s1 / n1
    return part.sum()


class HexPlaneRegCPU(torch.autograd.Function):
    """Weighted regularisers of the planes [1, C, H, W] (float32) -> 0-dim tensor; the gradient is
    formed in the forward pass and scaled by the upstream gradient."""

    @staticmethod
    def forward(ctx, kinds: np.ndarray, weights: tuple, *planes: Tensor) -> Tensor:
        arrays = plane_arrays(planes)
        ctx.grads, grads = _grad_buffers(arrays, zero=False)
        value = plane_regularisers(arrays, kinds, *weights, grads)
        return torch.tensor(value, dtype=planes[0].dtype, device="cpu")

    @staticmethod
    def backward(ctx, g: Tensor):
        scale = float(g)
        out, ctx.grads = ctx.grads, None
        if scale != 1.0:
            out = [t * scale for t in out]
        return (None, None, *out)
