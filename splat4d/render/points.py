"""Differentiable depth peeling of points (4K4D's renderer).

Each point has a position, a world radius r, a density sigma in [0, 1] and a colour. Seen from one camera
it covers the pixels within its projected radius r_px = f r / z of its projected centre; at a covered
pixel at screen distance d its alpha is sigma (1 - d^2 / r_px^2). A point may instead be a disc (a unit
normal n): the disc of radius r across n, projected with the camera's Jacobian J at its centre, is the
screen ellipse d^T S^-1 d < 1 with S = r^2 J (I - n n^T) J^T + DISC_MIN_PX^2 I (the floor keeps a disc
seen edge-on a pixel wide), and its alpha is sigma (1 - d^T S^-1 d). Both are one screen footprint, the
conic (a, b, c, s): covered where q = a dx^2 + 2 b dx dy + c dy^2 < s, alpha sigma (1 - q / s); a round
point is (1, 0, 1, r_px^2), so its q and s are d^2 and r_px^2 to the bit. Per pixel the K covering points
nearest the camera (K = 15 in training) are composited front to back:

    rgb = sum_k T_k alpha_k c_k + T_K background,   T_k = prod_{j<k} (1 - alpha_j).

The split is 4K4D's: choosing the K points per pixel (which points, in which order) is not
differentiable and is done by a selection backend; everything after it -- projection, alpha,
compositing -- is plain torch on the K gathered points, so gradients reach positions, radii, densities
and colours through autograd and are the same whichever backend selected.

Selection backends (identical indices; ties in depth go to the lower point index):
- "cpu": a numba kernel (`splat4d.render.points_cpu`), each point inserted into the sorted K-lists of
  the pixels it covers;
- "torch": (pixel, depth) pairs sorted with torch ops, any device (the CUDA path);
- "dense": every point against every pixel, the obviously-correct reference for tests (O(H W N) memory).
"""

from __future__ import annotations

import torch
from torch import Tensor

from splat4d.cameras import Cameras

SELECTORS = ("auto", "cpu", "torch", "dense")
DISC_MIN_PX = 0.5
"""Smallest half-width of a disc's screen ellipse, in pixels (added to its screen covariance)."""


def project_points(means: Tensor, radii: Tensor, camera: Cameras, normals: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Screen centres (pixel-edge coordinates), camera depths and screen footprints of points for one camera.

    Args:
        means: [N, 3] world positions; radii: [N] world radii; camera: one camera; normals: [N, 3] disc
            normals (any length; a zero row: a round point), or None (all round).
    Returns:
        (uv [N, 2], z [N], conic [N, 4]): (a, b, c, s) per point (see the module docstring); points behind
        the camera get s = 0 (they cover nothing).
    """
    assert means.dim() == 2 and means.shape[1] == 3 and radii.shape == means.shape[:1], (means.shape, radii.shape)
    R, t = camera.viewmats[0, :3, :3].to(means), camera.viewmats[0, :3, 3].to(means)
    pc = means @ R.T + t
    z = pc[:, 2]
    K = camera.Ks[0].to(means)
    front = z > 1e-6
    safe = torch.where(front, z, torch.ones_like(z))
    uv = torch.stack([K[0, 0] * pc[:, 0] / safe + K[0, 2], K[1, 1] * pc[:, 1] / safe + K[1, 2]], -1)
    r_px = torch.where(front, 0.5 * (K[0, 0].abs() + K[1, 1].abs()) * radii / safe, torch.zeros_like(z))
    one, zero = torch.ones_like(z), torch.zeros_like(z)
    conic = torch.stack([one, zero, one, r_px * r_px], -1)
    if normals is not None:
        conic = torch.where((normals != 0).any(-1, keepdim=True), _disc_conic(pc, safe, front, radii, normals @ R.T, K),
                            conic)
    return uv, z, conic


def _disc_conic(pc: Tensor, safe: Tensor, front: Tensor, radii: Tensor, n: Tensor, K: Tensor) -> Tensor:
    """[N, 4] screen conics of discs (camera-frame centres pc, normals n) from S = r^2 J (I - n n^T) J^T."""
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    zero = torch.zeros_like(safe)
    j0 = torch.stack([K[0, 0] / safe, zero, -K[0, 0] * pc[:, 0] / safe ** 2], -1)  # [N, 3] rows of J
    j1 = torch.stack([zero, K[1, 1] / safe, -K[1, 1] * pc[:, 1] / safe ** 2], -1)
    jn0, jn1 = (j0 * n).sum(-1), (j1 * n).sum(-1)
    r2, e = radii * radii, DISC_MIN_PX ** 2
    s00 = r2 * ((j0 * j0).sum(-1) - jn0 * jn0) + e
    s01 = r2 * ((j0 * j1).sum(-1) - jn0 * jn1)
    s11 = r2 * ((j1 * j1).sum(-1) - jn1 * jn1) + e
    det = torch.where(front, s00 * s11 - s01 * s01, zero)
    return torch.stack([s11, -s01, s00, det], -1)


def conic_extent(conic: Tensor) -> tuple[Tensor, Tensor]:
    """Half-widths (x, y) in pixels of the screen boxes holding footprints [N, 4] (r_px for round points)."""
    a, b, c, s = conic.unbind(-1)
    det = (a * c - b * b).clamp(min=1e-30)
    return torch.sqrt(s * c / det), torch.sqrt(s * a / det)


def _covered_q(conic: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    return conic[..., 0] * dx * dx + 2.0 * conic[..., 1] * dx * dy + conic[..., 2] * dy * dy


def select_dense(uv: Tensor, z: Tensor, conic: Tensor, width: int, height: int, k: int) -> Tensor:
    """Reference selection: [H, W, k] indices of the k nearest covering points per pixel (-1: none)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=uv.device, dtype=uv.dtype) + 0.5,
                            torch.arange(width, device=uv.device, dtype=uv.dtype) + 0.5, indexing="ij")
    q = _covered_q(conic, xs[..., None] - uv[:, 0], ys[..., None] - uv[:, 1])  # [H, W, N]
    cover = q < conic[:, 3]
    key = torch.where(cover, z.expand_as(q), torch.full_like(q, float("inf")))
    order = torch.sort(key, dim=-1, stable=True)
    idx = order.indices[..., :k]
    idx = torch.where(torch.isfinite(order.values[..., :k]), idx, torch.full_like(idx, -1))
    if idx.shape[-1] < k:
        idx = torch.cat([idx, idx.new_full((height, width, k - idx.shape[-1]), -1)], -1)
    return idx


def select_pairs(uv: Tensor, z: Tensor, conic: Tensor, width: int, height: int, k: int) -> Tensor:
    """Selection with torch ops on any device: every (point, covered pixel) pair, sorted by depth then
    (stably) by pixel, ranked within its pixel; the first k of each pixel kept. [H, W, k] (-1: none)."""
    dev = uv.device
    out = torch.full((height * width, k), -1, dtype=torch.long, device=dev)
    ex, ey = conic_extent(conic)
    x0 = torch.floor(uv[:, 0] - ex).clamp(0, width).long()
    x1 = torch.ceil(uv[:, 0] + ex).clamp(0, width).long()
    y0 = torch.floor(uv[:, 1] - ey).clamp(0, height).long()
    y1 = torch.ceil(uv[:, 1] + ey).clamp(0, height).long()
    bw, bh = (x1 - x0).clamp(min=0), (y1 - y0).clamp(min=0)
    n_pix = bw * bh
    live = (n_pix > 0) & (conic[:, 3] > 0)
    ids = torch.nonzero(live)[:, 0]
    if len(ids) == 0:
        return out.reshape(height, width, k)
    counts = n_pix[ids]
    pt = torch.repeat_interleave(ids, counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(pt), device=dev) - torch.repeat_interleave(start, counts)
    px = x0[pt] + local % bw[pt]
    py = y0[pt] + local // bw[pt]
    keep = _covered_q(conic[pt], px.to(uv) + 0.5 - uv[pt, 0], py.to(uv) + 0.5 - uv[pt, 1]) < conic[pt, 3]
    pt, pix = pt[keep], (py * width + px)[keep]
    order = torch.sort(z[pt], stable=True).indices  # pairs are in point order: ties go to the lower index
    pt, pix = pt[order], pix[order]
    order = torch.sort(pix, stable=True).indices
    pt, pix = pt[order], pix[order]
    first = torch.ones_like(pix, dtype=torch.bool)
    first[1:] = pix[1:] != pix[:-1]
    seg_start = torch.cummax(torch.where(first, torch.arange(len(pix), device=dev), torch.zeros_like(pix)), 0).values
    rank = torch.arange(len(pix), device=dev) - seg_start
    sel = rank < k
    out[pix[sel], rank[sel]] = pt[sel]
    return out.reshape(height, width, k)


def select_nearest(uv: Tensor, z: Tensor, conic: Tensor, width: int, height: int, k: int,
                   backend: str = "auto") -> Tensor:
    """[H, W, k] long: per pixel the indices of the k covering points nearest the camera, front to back,
    -1 where fewer cover it. backend: auto (cpu on the CPU, torch elsewhere), cpu, torch or dense."""
    if backend == "auto":
        backend = "cpu" if uv.device.type == "cpu" else "torch"
    with torch.no_grad():
        if backend == "dense":
            return select_dense(uv, z, conic, width, height, k)
        if backend == "torch":
            return select_pairs(uv, z, conic, width, height, k)
        if backend == "cpu":
            from splat4d.render.points_cpu import select_cpu

            return select_cpu(uv, z, conic, width, height, k)
    raise ValueError(f"unknown point selection backend {backend!r} (choose from {SELECTORS})")


def composite_points(idx: Tensor, uv: Tensor, z: Tensor, conic: Tensor, densities: Tensor, colors: Tensor,
                     background: Tensor | None = None) -> dict[str, Tensor]:
    """Front-to-back compositing of the selected points (differentiable in uv, z, conic, densities, colors).

    Args:
        idx: [H, W, K] selection (-1: empty slot); uv [N, 2], z [N], conic [N, 4] (`project_points`);
        densities [N] in [0, 1];
        colors [N, D]; background [D] (default zeros).
    Returns:
        rgb [H, W, D], alpha [H, W] (1 - final transmittance), depth [H, W] (alpha-weighted camera z).
    """
    H, W, K = idx.shape
    valid = idx >= 0
    j = idx.clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(H, device=uv.device, dtype=uv.dtype) + 0.5,
                            torch.arange(W, device=uv.device, dtype=uv.dtype) + 0.5, indexing="ij")
    cj = conic[j]  # [H, W, K, 4]
    q = _covered_q(cj, xs[..., None] - uv[j, 0], ys[..., None] - uv[j, 1])
    a = densities[j] * (1.0 - q / cj[..., 3].clamp(min=1e-12))
    a = torch.where(valid, a.clamp(0.0, 1.0), torch.zeros_like(a))
    trans = torch.cumprod(torch.cat([torch.ones_like(a[..., :1]), 1.0 - a], -1), -1)  # [H, W, K + 1]
    w = a * trans[..., :-1]
    bg = torch.zeros(colors.shape[-1], dtype=colors.dtype, device=colors.device) if background is None else background.to(colors)
    rgb = (w[..., None] * colors[j]).sum(-2) + trans[..., -1:] * bg
    return {"rgb": rgb, "alpha": 1.0 - trans[..., -1], "depth": (w * z[j]).sum(-1), "weights": w}


def render_points(means: Tensor, radii: Tensor, densities: Tensor, colors: Tensor, camera: Cameras, k: int = 15,
                  background: Tensor | None = None, backend: str = "auto", normals: Tensor | None = None
                  ) -> dict[str, Tensor]:
    """Depth-peel N points into one camera's image (see the module docstring).

    Args:
        means [N, 3], radii [N] (world), densities [N] in [0, 1], colors [N, D]; camera: one camera;
        k: points composited per pixel; background [D]; backend: selection backend (`select_nearest`);
        normals: [N, 3] disc normals (zero rows and None: round points; `project_points`).
    Returns:
        rgb [H, W, D], alpha [H, W], depth [H, W], idx [H, W, k], and weights [H, W, k] when computed in
        torch (a render without gradients on the CPU runs projection, selection and compositing in numba,
        `points_cpu.peel_cpu`, and returns no weights).
    """
    if len(camera) != 1:
        raise ValueError(f"render_points draws one camera, got {len(camera)}")
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                            for t in (means, radii, densities, colors, normals))
    if not grads and backend in ("auto", "cpu") and means.device.type == "cpu":
        from splat4d.render.points_cpu import peel_cpu  # forward only: projection, selection, compositing in numba

        return peel_cpu(means, radii, densities, colors, camera, k, background, normals)
    uv, z, conic = project_points(means, radii, camera, normals)
    idx = select_nearest(uv.detach(), z.detach(), conic.detach(), int(camera.width), int(camera.height), k, backend)
    out = composite_points(idx, uv, z, conic, densities, colors, background)
    out["idx"] = idx
    return out
