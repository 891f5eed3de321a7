"""Differentiable depth peeling of points (4K4D's renderer).

Each point has a position, a world radius r, a density sigma in [0, 1] and a colour. Seen from one camera
it covers the pixels within its projected radius r_px = f r / z of its projected centre; at a covered
pixel at screen distance d its alpha is sigma (1 - d^2 / r_px^2). Per pixel the K covering points
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


def project_points(means: Tensor, radii: Tensor, camera: Cameras) -> tuple[Tensor, Tensor, Tensor]:
    """Screen centres (pixel-edge coordinates), camera depths and screen radii of points for one camera.

    Args:
        means: [N, 3] world positions; radii: [N] world radii; camera: one camera.
    Returns:
        (uv [N, 2], z [N], r_px [N]); points behind the camera get r_px = 0 (they cover nothing).
    """
    assert means.dim() == 2 and means.shape[1] == 3 and radii.shape == means.shape[:1], (means.shape, radii.shape)
    R, t = camera.viewmats[0, :3, :3].to(means), camera.viewmats[0, :3, 3].to(means)
    pc = means @ R.T + t
    z = pc[:, 2]
    K = camera.Ks[0].to(means)
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    uv = torch.stack([K[0, 0] * pc[:, 0] / safe + K[0, 2], K[1, 1] * pc[:, 1] / safe + K[1, 2]], -1)
    r_px = torch.where(z > 1e-6, 0.5 * (K[0, 0].abs() + K[1, 1].abs()) * radii / safe, torch.zeros_like(z))
    return uv, z, r_px


def select_dense(uv: Tensor, z: Tensor, r_px: Tensor, width: int, height: int, k: int) -> Tensor:
    """Reference selection: [H, W, k] indices of the k nearest covering points per pixel (-1: none)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=uv.device, dtype=uv.dtype) + 0.5,
                            torch.arange(width, device=uv.device, dtype=uv.dtype) + 0.5, indexing="ij")
    d2 = (xs[..., None] - uv[:, 0]) ** 2 + (ys[..., None] - uv[:, 1]) ** 2  # [H, W, N]
    cover = d2 < r_px ** 2
    key = torch.where(cover, z.expand_as(d2), torch.full_like(d2, float("inf")))
    order = torch.sort(key, dim=-1, stable=True)
    idx = order.indices[..., :k]
    idx = torch.where(torch.isfinite(order.values[..., :k]), idx, torch.full_like(idx, -1))
    if idx.shape[-1] < k:
        idx = torch.cat([idx, idx.new_full((height, width, k - idx.shape[-1]), -1)], -1)
    return idx


def select_pairs(uv: Tensor, z: Tensor, r_px: Tensor, width: int, height: int, k: int) -> Tensor:
    """Selection with torch ops on any device: every (point, covered pixel) pair, sorted by depth then
    (stably) by pixel, ranked within its pixel; the first k of each pixel kept. [H, W, k] (-1: none)."""
    dev = uv.device
    out = torch.full((height * width, k), -1, dtype=torch.long, device=dev)
    x0 = torch.floor(uv[:, 0] - r_px).clamp(0, width).long()
    x1 = torch.ceil(uv[:, 0] + r_px).clamp(0, width).long()
    y0 = torch.floor(uv[:, 1] - r_px).clamp(0, height).long()
    y1 = torch.ceil(uv[:, 1] + r_px).clamp(0, height).long()
    bw, bh = (x1 - x0).clamp(min=0), (y1 - y0).clamp(min=0)
    n_pix = bw * bh
    live = (n_pix > 0) & (r_px > 0)
    ids = torch.nonzero(live)[:, 0]
    if len(ids) == 0:
        return out.reshape(height, width, k)
    counts = n_pix[ids]
    pt = torch.repeat_interleave(ids, counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(pt), device=dev) - torch.repeat_interleave(start, counts)
    px = x0[pt] + local % bw[pt]
    py = y0[pt] + local // bw[pt]
    d2 = (px.to(uv) + 0.5 - uv[pt, 0]) ** 2 + (py.to(uv) + 0.5 - uv[pt, 1]) ** 2
    keep = d2 < r_px[pt] ** 2
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


def select_nearest(uv: Tensor, z: Tensor, r_px: Tensor, width: int, height: int, k: int,
                   backend: str = "auto") -> Tensor:
    """[H, W, k] long: per pixel the indices of the k covering points nearest the camera, front to back,
    -1 where fewer cover it. backend: auto (cpu on the CPU, torch elsewhere), cpu, torch or dense."""
    if backend == "auto":
        backend = "cpu" if uv.device.type == "cpu" else "torch"
    with torch.no_grad():
        if backend == "dense":
            return select_dense(uv, z, r_px, width, height, k)
        if backend == "torch":
            return select_pairs(uv, z, r_px, width, height, k)
        if backend == "cpu":
            from splat4d.render.points_cpu import select_cpu

            return select_cpu(uv, z, r_px, width, height, k)
    raise ValueError(f"unknown point selection backend {backend!r} (choose from {SELECTORS})")


def composite_points(idx: Tensor, uv: Tensor, z: Tensor, r_px: Tensor, densities: Tensor, colors: Tensor,
                     background: Tensor | None = None) -> dict[str, Tensor]:
    """Front-to-back compositing of the selected points (differentiable in uv, z, r_px, densities, colors).

    Args:
        idx: [H, W, K] selection (-1: empty slot); uv [N, 2], z [N], r_px [N]; densities [N] in [0, 1];
        colors [N, D]; background [D] (default zeros).
    Returns:
        rgb [H, W, D], alpha [H, W] (1 - final transmittance), depth [H, W] (alpha-weighted camera z).
    """
    H, W, K = idx.shape
    valid = idx >= 0
    j = idx.clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(H, device=uv.device, dtype=uv.dtype) + 0.5,
                            torch.arange(W, device=uv.device, dtype=uv.dtype) + 0.5, indexing="ij")
    d2 = (xs[..., None] - uv[j, 0]) ** 2 + (ys[..., None] - uv[j, 1]) ** 2  # [H, W, K]
    r2 = (r_px[j] ** 2).clamp(min=1e-12)
    a = densities[j] * (1.0 - d2 / r2)
    a = torch.where(valid, a.clamp(0.0, 1.0), torch.zeros_like(a))
    trans = torch.cumprod(torch.cat([torch.ones_like(a[..., :1]), 1.0 - a], -1), -1)  # [H, W, K + 1]
    w = a * trans[..., :-1]
    bg = torch.zeros(colors.shape[-1], dtype=colors.dtype, device=colors.device) if background is None else background.to(colors)
    rgb = (w[..., None] * colors[j]).sum(-2) + trans[..., -1:] * bg
    return {"rgb": rgb, "alpha": 1.0 - trans[..., -1], "depth": (w * z[j]).sum(-1), "weights": w}


def render_points(means: Tensor, radii: Tensor, densities: Tensor, colors: Tensor, camera: Cameras, k: int = 15,
                  background: Tensor | None = None, backend: str = "auto") -> dict[str, Tensor]:
    """Depth-peel N points into one camera's image (see the module docstring).

    Args:
        means [N, 3], radii [N] (world), densities [N] in [0, 1], colors [N, D]; camera: one camera;
        k: points composited per pixel; background [D]; backend: selection backend (`select_nearest`).
    Returns:
        rgb [H, W, D], alpha [H, W], depth [H, W], idx [H, W, k], and weights [H, W, k] when computed in
        torch (a render without gradients on the CPU runs projection, selection and compositing in numba,
        `points_cpu.peel_cpu`, and returns no weights).
    """
    if len(camera) != 1:
        raise ValueError(f"render_points draws one camera, got {len(camera)}")
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (means, radii, densities, colors))
    if not grads and backend in ("auto", "cpu") and means.device.type == "cpu":
        from splat4d.render.points_cpu import peel_cpu  # forward only: projection, selection, compositing in numba

        return peel_cpu(means, radii, densities, colors, camera, k, background)
    uv, z, r_px = project_points(means, radii, camera)
    idx = select_nearest(uv.detach(), z.detach(), r_px.detach(), int(camera.width), int(camera.height), k, backend)
    out = composite_points(idx, uv, z, r_px, densities, colors, background)
    out["idx"] = idx
    return out
