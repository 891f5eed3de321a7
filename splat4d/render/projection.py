"""EWA projection of 3D Gaussians to screen space, in torch (autograd), with gsplat's math.

Same results as gsplat's `fully_fused_projection` for pinhole cameras: the Jacobian uses camera-space
x/z and y/z clamped to 1.3x the field of view, a 2D low-pass `eps2d` is added to the covariance, and
the screen radius is ceil(3.33 sigma) per axis (alpha >= 1/255 reaches about 3.33 sigma).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Projected(NamedTuple):
    radii: Tensor  # [C, N, 2] int32, 0 when culled
    means2d: Tensor  # [C, N, 2] pixel coordinates (pixel centres at +0.5)
    depths: Tensor  # [C, N] camera-space z
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c): sigma = 0.5(a dx^2 + c dy^2) + b dx dy
    compensations: Tensor  # [C, N] sqrt(det(cov2d) / det(cov2d + eps2d)), for antialiased opacities


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Unnormalised wxyz quaternions [..., 4] -> rotation matrices [..., 3, 3]."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def covariances(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances R S S^T R^T from quats [N, 4] and activated scales [N, 3] -> [N, 3, 3]."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [N, 3]
    covars: Tensor,  # [N, 3, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projected:
    """Project N world-space Gaussians into C pinhole cameras."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # [C, N, 3, 3]

    tx, ty, tz = means_c.unbind(-1)
    # Gaussians at or behind the near plane are culled below; dividing by a safe depth keeps their
    # (unused) values finite so that autograd never multiplies a zero gradient by inf.
    tz = torch.where(tz > near_plane, tz, torch.ones_like(tz))
    depths = means_c[..., 2]
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    txc = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz, zero, -fx * txc / tz**2, zero, fy / tz, -fy * tyc / tz**2], dim=-1
    ).reshape(tz.shape + (2, 3))
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)

    det_orig = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det_blurred = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    det = det_blurred.clamp(min=1e-10)  # keeps the culled Gaussians' (unused) conics finite
    compensations = torch.sqrt(torch.clamp(det_orig / det, min=0.0))
    conics = torch.stack(
        [cov2d[..., 1, 1] / det, -(cov2d[..., 0, 1] + cov2d[..., 1, 0]) / 2.0 / det, cov2d[..., 0, 0] / det],
        dim=-1,
    )

    with torch.no_grad():
        radius = torch.stack(
            [torch.ceil(3.33 * torch.sqrt(cov2d[..., 0, 0])), torch.ceil(3.33 * torch.sqrt(cov2d[..., 1, 1]))],
            dim=-1,
        )
        # gsplat's CUDA projection culls a Gaussian whose blurred 2D covariance has det <= 0 (degenerate,
        # e.g. a zero-width one seen edge-on with eps2d = 0, or NaN); test before the clamp above
        valid = (det_blurred > 0) & (depths > near_plane) & (depths < far_plane)
        inside = (
            (means2d[..., 0] + radius[..., 0] > 0)
            & (means2d[..., 0] - radius[..., 0] < width)
            & (means2d[..., 1] + radius[..., 1] > 0)
            & (means2d[..., 1] - radius[..., 1] < height)
        )
        ok = valid & inside & torch.isfinite(radius).all(-1)
        radii = torch.where(ok[..., None], radius, torch.zeros_like(radius)).int()
    return Projected(radii, means2d, depths, conics, compensations)
