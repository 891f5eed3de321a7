"""Numba kernels of the CPU Gaussian rasterizer: tile binning, compositing forward and backward.

Layout: every (camera, tile) pair is one job. Binning sorts Gaussians by depth once per camera (stable)
and fills tile lists with a counting sort, so each tile's list is already front-to-back. Compositing
walks a tile's list Gaussian by Gaussian over the tile's pixels and stops the tile once all its pixels
are done. Math is gsplat's: alpha = min(0.999, o * exp(-sigma)), skip sigma < 0 or alpha < 1/255, and
the exclusive stop (a Gaussian that would bring transmittance to <= 1e-4 is not composited).

Kernels compute in float64 whatever the caller's dtype: one compiled specialisation (a cold JIT costs
~20 s per dtype), and the backward's recovery of T by division by (1 - alpha) stays exact enough.
Gradients go to one slot per (tile, Gaussian) intersection and are summed per Gaussian afterwards:
no atomics, bit-identical from run to run.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4


@njit(parallel=True, cache=True)
def _touch_threads(n):
    out = np.zeros(n)
    for i in prange(n):
        out[i] = i
    return out


def start_threads(layer: str = "workqueue") -> None:
    """Start numba's thread pool now, on threading layer `layer` unless the pool already runs or
    NUMBA_THREADING_LAYER chooses one. Under OpenMP (numba's default where torch brings libgomp) the
    first parallel launch resets the OpenMP thread count torch shares, so a `torch.set_num_threads`
    made before it is silently undone.

    Training asks for "workqueue": OpenMP's workers spin-wait after every parallel region, and when
    other processes share the cores (training runs beside other work on 2 cores) a kernel of 0.2 ms
    then took 7-12 ms per launch, and a training iteration 2-3x as long; numba's workqueue threads
    sleep instead. The workqueue layer must not run kernels from two Python threads at once (numba
    stops the process): training launches them from one thread only."""
    try:
        numba.threading_layer()  # raises until the pool has started
    except ValueError:
        if layer and "NUMBA_THREADING_LAYER" not in os.environ:
            numba.config.THREADING_LAYER = layer
    _touch_threads(2)


@njit(cache=True)
def bin_tiles(means2d, radii, depths, tile_size, tiles_x, tiles_y):
    """Tile lists of all cameras. Returns (offsets [C*tiles+1] int64, ids [M] int32 Gaussian index).

    means2d [C, N, 2] f64, radii [C, N, 2] i32, depths [C, N] f64.
    """
    C, N = depths.shape
    ntiles = tiles_x * tiles_y
    rect = np.zeros((C, N, 4), dtype=np.int64)
    counts = np.zeros(C * ntiles + 1, dtype=np.int64)
    for c in range(C):
        for g in range(N):
            if radii[c, g, 0] <= 0 or radii[c, g, 1] <= 0:
                continue
            tx = means2d[c, g, 0] / tile_size
            ty = means2d[c, g, 1] / tile_size
            rx = radii[c, g, 0] / tile_size
            ry = radii[c, g, 1] / tile_size
            x0 = min(max(0, int(math.floor(tx - rx))), tiles_x)
            y0 = min(max(0, int(math.floor(ty - ry))), tiles_y)
            x1 = min(max(0, int(math.ceil(tx + rx))), tiles_x)
            y1 = min(max(0, int(math.ceil(ty + ry))), tiles_y)
            rect[c, g, 0], rect[c, g, 1], rect[c, g, 2], rect[c, g, 3] = x0, y0, x1, y1
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    counts[c * ntiles + yy * tiles_x + xx + 1] += 1
    offsets = np.cumsum(counts)
    ids = np.empty(offsets[-1], dtype=np.int32)
    fill = offsets[:-1].copy()
    for c in range(C):
        order = np.argsort(depths[c], kind="mergesort")
        for i in range(N):
            g = order[i]
            x0, y0, x1, y1 = rect[c, g, 0], rect[c, g, 1], rect[c, g, 2], rect[c, g, 3]
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    j = c * ntiles + yy * tiles_x + xx
                    ids[fill[j]] = g
                    fill[j] += 1
    return offsets, ids


@njit(cache=True, inline="always")
def _tile(job, ntiles, tiles_x, tile_size, width, height):
    """Camera index, pixel origin and size of job = (camera, tile)."""
    c = job // ntiles
    tile = job - c * ntiles
    ty = tile // tiles_x
    tx = tile - ty * tiles_x
    x0 = tx * tile_size
    y0 = ty * tile_size
    return c, x0, y0, min(tile_size, width - x0), min(tile_size, height - y0)


@njit(cache=True, inline="always")
def _splat(means2d, conics, opacities, c, g):
    """Screen-space mean, conic and opacity of Gaussian g in camera c."""
    return (means2d[c, g, 0], means2d[c, g, 1], conics[c, g, 0], conics[c, g, 1], conics[c, g, 2], opacities[c, g])


@njit(cache=True, inline="always")
def _footprint(mx, my, ca, cb, cc, o, sig_max, px, py):
    """(dx, dy, exp(-sigma), alpha) of a splat at pixel centre (px, py); alpha is 0 where gsplat skips the
    pair (sigma < 0, or alpha < 1/255, tested as sigma > sig_max = log(255 o) without calling exp).
    Forward and backward both use this, so they agree on which pairs count."""
    dx = mx - px
    dy = my - py
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    if sigma < 0.0 or sigma > sig_max:
        return dx, dy, 0.0, 0.0
    vis = math.exp(-sigma)
    alpha = min(ALPHA_MAX, o * vis)
    if alpha < ALPHA_MIN:
        return dx, dy, vis, 0.0
    return dx, dy, vis, alpha


@njit(cache=True, inline="always")
def _pixel_box(mx, my, rx, ry, x0, y0, pw, ph):
    """Tile-local pixel columns lx..hx and rows ly..hy whose centres may lie within the radius box
    (one pixel of slack on each side; an empty box has lx > hx or ly > hy)."""
    lx = max(0, int(math.floor(mx - rx - 0.5)) - x0)
    hx = min(pw - 1, int(math.ceil(mx + rx - 0.5)) - x0)
    ly = max(0, int(math.floor(my - ry - 0.5)) - y0)
    hy = min(ph - 1, int(math.ceil(my + ry - 0.5)) - y0)
    return lx, hx, ly, hy


@njit(parallel=True, cache=True)
def composite_forward(
    means2d, conics, opacities, feats, background, radii, offsets, ids, height, width, tile_size, tiles_x
):
    """Front-to-back alpha compositing of D-channel features.

    means2d [C, N, 2], conics [C, N, 3], opacities [C, N], feats [C, N, D], background [C, D] (all f64);
    radii [C, N, 2] i32; offsets/ids from `bin_tiles`. Each Gaussian visits only the tile pixels inside
    its radius box: alpha >= 1/255 implies sigma <= 5.54 < 3.33^2 / 2, so no pixel outside can count.
    Returns out [C, H, W, D], T [C, H, W] (final transmittance), last [C, H, W] int32 (entries of the
    tile list consumed, i.e. index after the last composited one), weights [M] (blend weight summed
    over the tile's pixels, per intersection).
    """
    C, N, D = feats.shape
    ntiles = (offsets.shape[0] - 1) // C
    out = np.zeros((C, height, width, D))
    T_out = np.ones((C, height, width))
    last_out = np.zeros((C, height, width), dtype=np.int32)
    weights = np.zeros(ids.shape[0])
    log255 = math.log(255.0)
    for job in prange(C * ntiles):
        c, x0, y0, pw, ph = _tile(job, ntiles, tiles_x, tile_size, width, height)
        P = pw * ph
        T = np.ones(P)
        acc = np.zeros((P, D))
        done = np.zeros(P, dtype=np.bool_)
        last = np.zeros(P, dtype=np.int32)
        ndone = 0
        start = offsets[job]
        for k in range(start, offsets[job + 1]):
            if ndone == P:
                break
            g = ids[k]
            mx, my, ca, cb, cc, o = _splat(means2d, conics, opacities, c, g)
            if o <= 0.0:
                continue
            # alpha < 1/255  <=>  sigma > log(255 o): skip exp for those pixels
            sig_max = log255 + math.log(o)
            lx, hx, ly, hy = _pixel_box(mx, my, radii[c, g, 0], radii[c, g, 1], x0, y0, pw, ph)
            wk = 0.0
            for yy in range(ly, hy + 1):
                for col in range(lx, hx + 1):
                    p = yy * pw + col
                    if done[p]:
                        continue
                    dx, dy, vis, alpha = _footprint(mx, my, ca, cb, cc, o, sig_max, x0 + col + 0.5, y0 + yy + 0.5)
                    if alpha == 0.0:
                        continue
                    next_T = T[p] * (1.0 - alpha)
                    if next_T <= T_MIN:
                        done[p] = True
                        ndone += 1
                        continue
                    w = alpha * T[p]
                    for d in range(D):
                        acc[p, d] += w * feats[c, g, d]
                    wk += w
                    T[p] = next_T
                    last[p] = k - start + 1
            weights[k] = wk
        for p in range(P):
            y = y0 + p // pw
            x = x0 + p % pw
            for d in range(D):
                out[c, y, x, d] = acc[p, d] + T[p] * background[c, d]
            T_out[c, y, x] = T[p]
            last_out[c, y, x] = last[p]
    return out, T_out, last_out, weights


@njit(parallel=True, cache=True)
def composite_backward(
    means2d, conics, opacities, feats, background, radii, offsets, ids, T_final, last, g_out, g_alpha,
    height, width, tile_size, tiles_x,
):
    """Gradients of the compositing, one slot per intersection.

    g_out [C, H, W, D] = dL/d(out), g_alpha [C, H, W] = dL/d(1 - T).
    Returns per-intersection (g_means2d [M, 2], g_conics [M, 3], g_opacities [M], g_feats [M, D]),
    and g_background [C, D].
    """
    C, N, D = feats.shape
    M = ids.shape[0]
    ntiles = (offsets.shape[0] - 1) // C
    gm = np.zeros((M, 2))
    gc = np.zeros((M, 3))
    go = np.zeros(M)
    gf = np.zeros((M, D))
    gbg_tiles = np.zeros((C * ntiles, D))
    log255 = math.log(255.0)
    for job in prange(C * ntiles):
        c, x0, y0, pw, ph = _tile(job, ntiles, tiles_x, tile_size, width, height)
        P = pw * ph
        start = offsets[job]
        T = np.empty(P)
        Tf = np.empty(P)
        lastp = np.empty(P, dtype=np.int32)
        gpix = np.empty((P, D))
        bg_dot = np.empty(P)
        ga = np.empty(P)
        rec = np.zeros((P, D))
        max_last = 0
        for p in range(P):
            y = y0 + p // pw
            x = x0 + p % pw
            T[p] = T_final[c, y, x]
            Tf[p] = T[p]
            lastp[p] = last[c, y, x]
            max_last = max(max_last, lastp[p])
            s = 0.0
            for d in range(D):
                gpix[p, d] = g_out[c, y, x, d]
                s += background[c, d] * gpix[p, d]
                gbg_tiles[job, d] += T[p] * gpix[p, d]
            bg_dot[p] = s
            ga[p] = g_alpha[c, y, x]
        for k in range(start + max_last - 1, start - 1, -1):
            g = ids[k]
            mx, my, ca, cb, cc, o = _splat(means2d, conics, opacities, c, g)
            if o <= 0.0:
                continue
            sig_max = log255 + math.log(o)
            kk = k - start
            lx, hx, ly, hy = _pixel_box(mx, my, radii[c, g, 0], radii[c, g, 1], x0, y0, pw, ph)
            for yy in range(ly, hy + 1):
                for col in range(lx, hx + 1):
                    p = yy * pw + col
                    if kk >= lastp[p]:
                        continue
                    dx, dy, vis, alpha = _footprint(mx, my, ca, cb, cc, o, sig_max, x0 + col + 0.5, y0 + yy + 0.5)
                    if alpha == 0.0:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    T_i = T[p] * ra
                    w = alpha * T_i
                    dalpha = 0.0
                    for d in range(D):
                        gf[k, d] += w * gpix[p, d]
                        dalpha += (feats[c, g, d] - rec[p, d]) * gpix[p, d]
                        rec[p, d] = alpha * feats[c, g, d] + (1.0 - alpha) * rec[p, d]
                    dalpha = dalpha * T_i + (ga[p] - bg_dot[p]) * Tf[p] * ra
                    T[p] = T_i
                    if o * vis <= ALPHA_MAX:
                        go[k] += vis * dalpha
                        dsig = -o * vis * dalpha
                        gc[k, 0] += 0.5 * dx * dx * dsig
                        gc[k, 1] += dx * dy * dsig
                        gc[k, 2] += 0.5 * dy * dy * dsig
                        gm[k, 0] += dsig * (ca * dx + cb * dy)
                        gm[k, 1] += dsig * (cb * dx + cc * dy)
    gbg = np.zeros((C, D))
    for job in range(C * ntiles):
        for d in range(D):
            gbg[job // ntiles, d] += gbg_tiles[job, d]
    return gm, gc, go, gf, gbg


@njit(cache=True)
def sum_per_gaussian(offsets, ids, C, N, slots):
    """Sum per-intersection rows slots [M, K] into per-(camera, Gaussian) rows [C, N, K]."""
    ntiles = (offsets.shape[0] - 1) // C
    K = slots.shape[1]
    out = np.zeros((C, N, K))
    for job in range(C * ntiles):
        c = job // ntiles
        for k in range(offsets[job], offsets[job + 1]):
            g = ids[k]
            for j in range(K):
                out[c, g, j] += slots[k, j]
    return out


def num_threads() -> int:
    return numba.get_num_threads()
