"""Numba kernels of depth peeling (`splat4d.render.points`).

Selection (`select_cpu`, any render): per pixel the k covering points nearest the camera. Points in front
of the camera whose boxes meet the image are visited about front to back (by depth bucket), and each is
inserted into the k-list of every pixel it covers, sorted by depth and then point index (ties go to the
lower index, as the torch backends order them, whatever the order of the visit). Rows of the image are
split between numba's threads in blocks of equal work; each thread visits every point but only the rows it
owns, so no two threads write one pixel.

A render without gradients (`peel_cpu`, a baked model's) also projects and composites in numba, reading
the stored arrays as they are."""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor


@njit(parallel=True, cache=True)
def _select(u, v, z, cq, ex, ey, ids, width, height, k, edges):
    # u, v, cq (conics [n, 4]), ex, ey (box half-widths): in the order of the visit; z: depth by point index
    # (ids[i] is the i-th visited point's index); edges: the row blocks' first rows and the image's height
    n = u.shape[0]
    idx = np.full((height, width, k), -1, dtype=np.int64)
    count = np.zeros((height, width), dtype=np.int64)
    for b in prange(edges.shape[0] - 1):
        ry0, ry1 = edges[b], edges[b + 1]
        for i in range(n):
            r2 = cq[i, 3]
            if r2 <= 0.0:
                continue
            y0 = max(int(math.floor(v[i] - ey[i])), ry0)
            y1 = min(int(math.ceil(v[i] + ey[i])), ry1)
            if y0 >= y1:
                continue
            x0 = max(int(math.floor(u[i] - ex[i])), 0)
            x1 = min(int(math.ceil(u[i] + ex[i])), width)
            qa, qb2, qc = cq[i, 0], 2.0 * cq[i, 1], cq[i, 2]
            di = ids[i]
            zi = z[di]
            for py in range(y0, y1):
                dy = py + 0.5 - v[i]
                for px in range(x0, x1):
                    dx = px + 0.5 - u[i]
                    if qa * dx * dx + qb2 * dx * dy + qc * dy * dy >= r2:
                        continue
                    c = count[py, px]
                    if c == k:
                        q = idx[py, px, k - 1]
                        if zi > z[q] or (zi == z[q] and di > q):
                            continue
                    # insertion point: after every (depth, index) below (zi, di); visited front to back,
                    # that is the end of the list unless depths tie
                    j = c if c < k else k - 1
                    while j > 0:
                        q = idx[py, px, j - 1]
                        if z[q] < zi or (z[q] == zi and q < di):
                            break
                        if j < k:
                            idx[py, px, j] = q
                        j -= 1
                    idx[py, px, j] = di
                    if c < k:
                        count[py, px] = c + 1
    return idx


def select_cpu(uv: Tensor, z: Tensor, conic: Tensor, width: int, height: int, k: int) -> Tensor:
    """[H, W, k] long indices of the k nearest covering points per pixel (-1: none); see the module.
    conic: [N, 4] screen footprints (`points.project_points`)."""
    a = lambda t: np.ascontiguousarray(t.detach().cpu().double().numpy())  # noqa: E731
    uv_ = a(uv)
    return torch.from_numpy(_select_np(uv_[:, 0], uv_[:, 1], a(z), a(conic), width, height, k)).to(uv.device)


@njit(parallel=True, cache=True)
def _boxes(u, v, z, q, width, height):
    """Each point's box half-widths (x, y) in pixels, and whether it is in front of the camera with a box
    that meets the image (and no NaN or infinity in its place: the counting sort indexes by depth)."""
    n = u.shape[0]
    ex, ey = np.zeros(n), np.zeros(n)
    keep = np.zeros(n, dtype=np.bool_)
    for i in prange(n):
        if not (q[i, 3] > 0.0):  # behind the camera (or not a number)
            continue
        det = max(q[i, 0] * q[i, 2] - q[i, 1] * q[i, 1], 1e-30)
        ex[i] = math.sqrt(q[i, 3] * q[i, 2] / det)
        ey[i] = math.sqrt(q[i, 3] * q[i, 0] / det)
        # every comparison with a NaN is false: a point with one is never kept
        keep[i] = u[i] + ex[i] > 0.0 and u[i] - ex[i] < width and v[i] + ey[i] > 0.0 and v[i] - ey[i] < height \
            and z[i] > -np.inf and z[i] < np.inf
    return ex, ey, keep


@njit(cache=True)
def _visit(u, v, z, q, ex, ey, keep, width, height, buckets, blocks):
    """The points to visit, about front to back, and the row blocks: (ids, u, v, conic, x and y half-widths)
    of the `keep` points ordered by depth bucket (`buckets` equal steps between the nearest and the
    farthest) and by index within one (a counting sort: a full sort and the gathers after it took a fifth
    of the selection's time), and `blocks` + 1 row edges that give each block about the same number of box
    pixels (equal bands left one thread 90 % of the work on a subject in the lower half of the image)."""
    n = u.shape[0]
    lo, hi = np.inf, -np.inf
    work = np.zeros(height + 1)  # box pixels starting (+) and ending (-) per row
    for i in range(n):
        if keep[i]:
            lo, hi = min(lo, z[i]), max(hi, z[i])
            y0, y1 = max(int(math.floor(v[i] - ey[i])), 0), min(int(math.ceil(v[i] + ey[i])), height)
            w = min(int(math.ceil(u[i] + ex[i])), width) - max(int(math.floor(u[i] - ex[i])), 0)
            if y0 < y1 and w > 0:
                work[y0] += w
                work[y1] -= w
    total, run = 0.0, 0.0
    for y in range(height):
        run += work[y]
        work[y] = run + 1.0  # every row costs something, covered or not
        total += work[y]
    edges = np.full(blocks + 1, height, dtype=np.int64)
    edges[0] = 0
    acc, b = 0.0, 1
    for y in range(height):
        acc += work[y]
        while b < blocks and acc >= total * b / blocks:
            edges[b] = y + 1
            b += 1
    step = (hi - lo) / buckets if hi > lo else 1.0
    start = np.zeros(buckets + 1, dtype=np.int64)
    key = np.empty(n, dtype=np.int64)
    for i in range(n):
        if keep[i]:
            key[i] = min(int((z[i] - lo) / step), buckets - 1)
            start[key[i] + 1] += 1
    for c in range(buckets):
        start[c + 1] += start[c]
    m = start[buckets]
    ids = np.empty(m, dtype=np.int64)
    uo, vo, qo, exo, eyo = np.empty(m), np.empty(m), np.empty((m, 4)), np.empty(m), np.empty(m)
    for i in range(n):
        if keep[i]:
            j = start[key[i]]
            start[key[i]] = j + 1
            ids[j], uo[j], vo[j], exo[j], eyo[j] = i, u[i], v[i], ex[i], ey[i]
            for c in range(4):
                qo[j, c] = q[i, c]
    return ids, uo, vo, qo, exo, eyo, edges


def _select_np(u, v, z, q, width: int, height: int, k: int) -> np.ndarray:
    """The selection on numpy arrays. The kernel visits the points about front to back (`_visit`: each
    insertion is then mostly an append, and a pixel whose list is full rejects every later point at once:
    half the time of index order on a 30k-point 4K4D frame); equal depths are ordered by point index inside
    the kernel, so the order of the visit changes nothing. One block of rows per thread, cut to equal work
    (each block visits every point, so more blocks cost time)."""
    ex, ey, keep = _boxes(u, v, z, q, int(width), int(height))
    blocks = max(1, min(int(height), numba.get_num_threads()))
    ids, uo, vo, qo, ex, ey, edges = _visit(u, v, z, q, ex, ey, keep, int(width), int(height), max(64, len(u) // 4),
                                           blocks)
    return _select(uo, vo, z, qo, ex, ey, ids, int(width), int(height), int(k), edges)


@njit(parallel=True, cache=True)
def _project(means, radii, normals, R, t, K, min_px):
    """`points.project_points` in float64: screen centre (u, v), depth z and conic [4] per point (normals
    [N, 3]: a zero row, or no rows at all, a round point)."""
    n = means.shape[0]
    discs = normals.shape[0] == n
    u, v, z, q = np.empty(n), np.empty(n), np.empty(n), np.empty((n, 4))
    f = 0.5 * (abs(K[0, 0]) + abs(K[1, 1]))
    for i in prange(n):
        x = R[0, 0] * means[i, 0] + R[0, 1] * means[i, 1] + R[0, 2] * means[i, 2] + t[0]
        y = R[1, 0] * means[i, 0] + R[1, 1] * means[i, 1] + R[1, 2] * means[i, 2] + t[1]
        zi = R[2, 0] * means[i, 0] + R[2, 1] * means[i, 1] + R[2, 2] * means[i, 2] + t[2]
        front = zi > 1e-6
        safe = zi if front else 1.0
        u[i] = K[0, 0] * x / safe + K[0, 2]
        v[i] = K[1, 1] * y / safe + K[1, 2]
        z[i] = zi
        nx = ny = nz = 0.0
        if discs:
            for a in range(3):
                nx += R[0, a] * normals[i, a]
                ny += R[1, a] * normals[i, a]
                nz += R[2, a] * normals[i, a]
        nn = math.sqrt(nx * nx + ny * ny + nz * nz)
        if nn == 0.0:
            rp = f * radii[i] / safe if front else 0.0
            q[i, 0], q[i, 1], q[i, 2], q[i, 3] = 1.0, 0.0, 1.0, rp * rp
            continue
        nx, ny, nz = nx / nn, ny / nn, nz / nn
        a0, a2 = K[0, 0] / safe, -K[0, 0] * x / (safe * safe)  # rows of J: (a0, 0, a2), (0, b1, b2)
        b1, b2 = K[1, 1] / safe, -K[1, 1] * y / (safe * safe)
        jn0, jn1 = a0 * nx + a2 * nz, b1 * ny + b2 * nz
        r2, e = radii[i] * radii[i], min_px * min_px
        s00 = r2 * (a0 * a0 + a2 * a2 - jn0 * jn0) + e
        s01 = r2 * (a2 * b2 - jn0 * jn1)
        s11 = r2 * (b1 * b1 + b2 * b2 - jn1 * jn1) + e
        q[i, 0], q[i, 1], q[i, 2] = s11, -s01, s00
        q[i, 3] = s00 * s11 - s01 * s01 if front else 0.0
    return u, v, z, q


@njit(parallel=True, cache=True)
def _peel_forward(idx, u, v, z, q, dens, colors, bg):
    H, W, K = idx.shape
    D = colors.shape[1]
    rgb = np.empty((H, W, D))
    alpha = np.empty((H, W))
    depth = np.empty((H, W))
    for py in prange(H):
        for px in range(W):
            T = 1.0
            dep = 0.0
            acc = np.zeros(D)
            for s in range(K):
                i = idx[py, px, s]
                if i < 0:
                    break
                dx = px + 0.5 - u[i]
                dy = py + 0.5 - v[i]
                rr = q[i, 3]
                if rr < 1e-12:
                    rr = 1e-12
                a = dens[i] * (1.0 - (q[i, 0] * dx * dx + 2.0 * q[i, 1] * dx * dy + q[i, 2] * dy * dy) / rr)
                a = min(max(a, 0.0), 1.0)
                w = a * T
                for c in range(D):
                    acc[c] += w * colors[i, c]
                dep += w * z[i]
                T *= 1.0 - a
            for c in range(D):
                rgb[py, px, c] = acc[c] + T * bg[c]
            alpha[py, px] = 1.0 - T
            depth[py, px] = dep
    return rgb, alpha, depth


@njit(cache=True)
def _used(idx, n):
    need = np.zeros(n, dtype=np.bool_)
    for i in idx.ravel():
        if i >= 0:
            need[i] = True
    return need


def _project_select(means: Tensor, radii: Tensor, camera, k: int, normals: Tensor | None = None):
    from splat4d.render.points import DISC_MIN_PX

    f64 = lambda t: np.ascontiguousarray(t.detach().cpu().double().numpy())  # noqa: E731
    a = lambda t: np.ascontiguousarray(t.detach().cpu().numpy())  # noqa: E731
    nrm = np.zeros((0, 3), dtype=a(means).dtype) if normals is None else a(normals.to(means.dtype))
    u, v, z, q = _project(a(means), a(radii), nrm, f64(camera.viewmats[0, :3, :3]), f64(camera.viewmats[0, :3, 3]),
                          f64(camera.Ks[0]), DISC_MIN_PX)
    return u, v, z, q, _select_np(u, v, z, q, int(camera.width), int(camera.height), k)


def used_points(means: Tensor, radii: Tensor, camera, k: int, normals: Tensor | None = None) -> Tensor:
    """[N] bool: the points some pixel of `camera` composites (among its k nearest)."""
    return torch.from_numpy(_used(_project_select(means, radii, camera, k, normals)[4], len(means)))


def peel_cpu(means: Tensor, radii: Tensor, densities: Tensor, colors: Tensor | Callable[[Tensor], Tensor], camera, k: int,
             background: Tensor | None = None, normals: Tensor | None = None) -> dict[str, Tensor]:
    """Projection, selection and compositing in numba, forward only (a baked model's render): the values
    of `points.render_points` (projected in float64, so a pixel's values may differ from the float32 torch
    path's by float32 rounding). The stored arrays are read as they are (float32 or float64), nothing is
    converted beforehand. `colors`: [N, D], or a function given [N] bool (the points some pixel composites)
    that returns [N, D] colours right at least there (a baked model shades only those: 55-65 % of a frame's
    points on the 4K4D benchmark scenes); normals: disc normals (`points.project_points`). -> rgb [H, W, D], alpha [H, W], depth [H, W] (colors' dtype),
    idx [H, W, k]."""
    a = lambda t: np.ascontiguousarray(t.detach().cpu().numpy())  # noqa: E731
    f64 = lambda t: np.ascontiguousarray(t.detach().cpu().double().numpy())  # noqa: E731
    u, v, z, q, idx = _project_select(means, radii, camera, k, normals)
    if callable(colors):
        colors = colors(torch.from_numpy(_used(idx, len(u))))
    bg = np.zeros(colors.shape[-1]) if background is None else f64(background.reshape(-1))
    rgb, alpha, depth = _peel_forward(idx, u, v, z, q, a(densities), a(colors), bg)
    dt = colors.dtype
    return {"rgb": torch.from_numpy(rgb).to(dt), "alpha": torch.from_numpy(alpha).to(dt),
            "depth": torch.from_numpy(depth).to(dt), "idx": torch.from_numpy(idx)}
