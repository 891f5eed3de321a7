"""Temporal-spatial similarity fusion (DS4D §3.4, eqs. 3-4): point features of the Gaussians from the
decoupled features of every view, fused over views.

Point features: each Gaussian centre is projected into every feature view and the view's decoupled token
grid is sampled bilinearly there (zeros behind the camera or outside the image); between two frames the
samples of both are blended linearly in time.

Fusion over the V views (view 0 is the input video's camera, the "front" view; the rest are pseudo views):

- ``front``: view 0 only (Table 2 rows D and E: frame features without TSSF).
- ``mean``: average pooling over views (row F).
- ``ga``: global awareness, W = softmax over views of FC(point features) (eq. 3), sum of W x features
  (eq. 4) (row G).
- ``da``: distance awareness (row H). The L1 distance of each pseudo view's point features to the front
  view's, taken channel by channel (|f_j - f_0|, so it says where they differ, not only how much), is
  appended to the pseudo features; the pseudo views are fused by eqs. 3-4; the front view's features,
  with their zero distance to themselves appended so both have 2C channels, and the fused pseudo
  features are fused once more by eqs. 3-4 (a second FC). The paper says "appended to real point
  features" and "once again merge": reading the append as adding a candidate to the set that the second
  fusion weighs is our choice (a channel concatenation would leave nothing to take a softmax over).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FUSIONS = ("front", "mean", "ga", "da")


@torch.no_grad()
def point_features(grids: Tensor, viewmats: Tensor, Ks: Tensor, size: tuple[int, int], means: Tensor,
                   frame: float) -> Tensor:
    """Decoupled features at the Gaussians' centres.

    Args:
        grids: [T, V, Ph, Pw, C] decoupled token grids of the feature views.
        viewmats, Ks: [V, 4, 4] world->camera and [V, 3, 3] intrinsics of the feature views.
        size: (width, height) of the images the intrinsics describe.
        means: [N, 3] world positions.
        frame: fractional frame index in [0, T - 1] (blended between floor and ceil).
    Returns:
        [N, V, C].
    """
    T, V = grids.shape[:2]
    pc = torch.einsum("vij,nj->vni", viewmats[:, :3, :3], means) + viewmats[:, None, :3, 3]  # [V, N, 3]
    z = pc[..., 2]
    uv = torch.einsum("vij,vnj->vni", Ks[:, :2, :3], pc) / z.clamp_min(1e-6)[..., None]
    wh = torch.tensor(size, dtype=uv.dtype, device=uv.device)
    coords = (uv / wh * 2 - 1).to(grids.dtype)  # grid_sample's [-1, 1] over the whole image
    coords = torch.where((z > 1e-6)[..., None], coords, torch.full_like(coords, 4.0))  # behind: outside
    frame = min(max(float(frame), 0.0), T - 1.0)
    f0 = int(frame)
    f1, w = min(f0 + 1, T - 1), frame - f0
    out = None
    for f, weight in ((f0, 1.0 - w), (f1, w)):
        if weight <= 0 and out is not None:
            continue
        g = grids[f].permute(0, 3, 1, 2)  # [V, C, Ph, Pw]
        s = F.grid_sample(g, coords[:, None], mode="bilinear", padding_mode="zeros", align_corners=False)
        s = s[:, :, 0].permute(2, 0, 1)  # [N, V, C]
        out = s * weight if out is None else out + s * weight
    return out


class Fusion(nn.Module):
    """Point features [N, V, C] -> fused features [N, out_dim] (see the module docstring)."""

    def __init__(self, channels: int, mode: str = "da"):
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"unknown fusion {mode!r}; one of {FUSIONS}")
        self.mode = mode
        self.channels = channels
        if mode == "ga":
            self.fc = nn.Linear(channels, 1)
        elif mode == "da":
            self.fc_pseudo = nn.Linear(2 * channels, 1)
            self.fc = nn.Linear(2 * channels, 1)

    @property
    def out_dim(self) -> int:
        return 2 * self.channels if self.mode == "da" else self.channels

    def forward(self, feats: Tensor, return_weights: bool = False):
        """feats [N, V, C] -> [N, out_dim]; with `return_weights` also the softmax weights of the last
        fusion ([N, V] for ga, [N, 2] for da: front vs fused pseudo; None for front and mean)."""
        weights = None
        if self.mode == "front":
            out = feats[:, 0]
        elif self.mode == "mean":
            out = feats.mean(1)
        elif self.mode == "ga":
            out, weights = weighted_sum(self.fc, feats)
        else:
            front = feats[:, :1]  # [N, 1, C]
            front = torch.cat([front, torch.zeros_like(front)], dim=-1)
            if feats.shape[1] > 1:
                pseudo = feats[:, 1:]
                pseudo = torch.cat([pseudo, (pseudo - feats[:, :1]).abs()], dim=-1)  # [N, V-1, 2C]
                fused, _ = weighted_sum(self.fc_pseudo, pseudo)
                front = torch.cat([front, fused[:, None]], dim=1)  # [N, 2, 2C]
            out, weights = weighted_sum(self.fc, front)
        return (out, weights) if return_weights else out


def weighted_sum(fc: nn.Linear, feats: Tensor) -> tuple[Tensor, Tensor]:
    """Eqs. 3-4: W = softmax over views of fc(feats) [N, V]; returns (sum of W x feats [N, C], W)."""
    w = torch.softmax(fc(feats)[..., 0], dim=1)
    return (w[..., None] * feats).sum(1), w
