"""4K4D's image-based appearance: a point's colour blended from the source views of its frame.

For a point at a frame, its colour in each source view is sampled (bilinearly) where it projects, and a
small network gives each (point, source view) a blend logit from the point's feature, the sampled colour
and the unit direction from the point to that source camera. A rendered view uses the `n` source views
nearest to it in direction (as seen from the scene centre), never itself; the point's colour is the
softmax-weighted mean of those views' colours, plus a degree-3 SH residual tanh(SH(d)) x 0.25, clamped
to [0, 1]. The logits do not depend on the rendered view, so a bake stores per (frame, point, source
view) a colour and a logit, and rendering a baked model only selects views and blends.

Occlusion is not tested (as in 4K4D): a source view where the point is hidden shows the occluder's
colour there, and the blend network learns to weigh such views down from their colour and direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splat4d.cameras import Cameras, sample_images as sample_colors  # noqa: F401  (ibr's name for it)
from splat4d.fields.mlp import MLP
from splat4d.fields.sh import eval_sh, num_sh_bases

SH_SCALE = 0.25
"""The SH residual is tanh(SH(d)) x SH_SCALE (4K4D)."""


def nearest_frame(frame_times: Tensor, t: float) -> int:
    """Index of the frame whose time [F] is nearest t (a point-sequence model draws that frame's points)."""
    return int(torch.argmin((frame_times - float(t)).abs()))


def nearest_views(target_centers: Tensor, source_centers: Tensor, center: Tensor, n: int,
                  exclude_same: bool = True) -> Tensor:
    """Indices [T, n] of the n source cameras nearest each target camera in direction from `center`.

    Args:
        target_centers: [T, 3]; source_centers: [V, 3]; center: [3] the scene centre.
        exclude_same: skip a source at the target's own position (a training view is never its own source).
    """
    dt = F.normalize(target_centers - center, dim=-1)
    ds = F.normalize(source_centers - center, dim=-1)
    cos = dt @ ds.T  # [T, V]
    if exclude_same:
        same = torch.cdist(target_centers, source_centers) < 1e-6
        cos = cos.masked_fill(same, -3.0)
    n = min(n, source_centers.shape[0] - (1 if exclude_same else 0))
    return torch.topk(cos, max(n, 1), dim=-1).indices


BLEND_CHUNK = 4096
"""Points per chunk of the blend network when no gradients are needed (see `BlendNet.forward`)."""


class BlendNet(nn.Module):
    """Blend logit of a (point, source view) from [point feature, sampled colour, direction to the source]."""

    def __init__(self, feature_dim: int, hidden: int = 32, depth: int = 2):
        super().__init__()
        self.mlp = MLP(feature_dim + 6, hidden, 1, depth)

    def forward(self, features: Tensor, colors: Tensor, dirs: Tensor) -> Tensor:
        """features [N, F], colors [N, V, 3], dirs [N, V, 3] -> logits [N, V]. Without gradients, in chunks of
        BLEND_CHUNK points: the [N * V, hidden] activations of a whole frame (80-110 MB on the MuJoCo capture)
        are beyond what the allocator keeps, so every render faulted them in afresh (60,000 page faults and
        ~185 ms of kernel time per render on 2 cores); a chunk's are reused."""
        if torch.is_grad_enabled() or features.shape[0] <= BLEND_CHUNK:
            return self._logits(features, colors, dirs)
        return torch.cat([self._logits(features[i:i + BLEND_CHUNK], colors[i:i + BLEND_CHUNK], dirs[i:i + BLEND_CHUNK])
                          for i in range(0, features.shape[0], BLEND_CHUNK)])

    def _logits(self, features: Tensor, colors: Tensor, dirs: Tensor) -> Tensor:
        f = features[:, None].expand(-1, colors.shape[1], -1)
        return self.mlp(torch.cat([f, colors, dirs], -1))[..., 0]


def source_dirs(points: Tensor, cams: Cameras) -> Tensor:
    """Unit directions [N, V, 3] from each point to each source camera centre."""
    return F.normalize(cams.centers[None] - points[:, None], dim=-1)


def blend(colors: Tensor, logits: Tensor, valid: Tensor, views: Tensor) -> Tensor:
    """Softmax blend over the chosen source views.

    Args:
        colors [N, V, 3], logits [N, V], valid [N, V]: per source view; views [n] chosen source indices.
    Returns:
        [N, 3]; a point no chosen view sees gets 0 (the SH residual alone).
    """
    c, lg, ok = colors[:, views], logits[:, views], valid[:, views]
    lg = lg.masked_fill(~ok, float("-inf"))
    w = torch.softmax(lg, dim=-1).nan_to_num(0.0)  # all -inf -> nan -> 0
    return (w[..., None] * c).sum(1)


def sh_residual(sh: Tensor, points: Tensor, eye: Tensor) -> Tensor:
    """tanh(SH(d)) x SH_SCALE for view directions from the eye [3] to the points. sh [N, B, 3] -> [N, 3]."""
    degree = {num_sh_bases(d): d for d in range(5)}[sh.shape[1]]
    d = F.normalize(points - eye, dim=-1)
    return torch.tanh(eval_sh(degree, sh, d)) * SH_SCALE


def sh_dc_residual(sh: Tensor) -> Tensor:
    """The view-independent part of the residual, tanh(C0 x DC coefficient) x SH_SCALE. sh [N, B, 3] -> [N, 3]."""
    from splat4d.fields.sh import C0

    return torch.tanh(C0 * sh[:, 0]) * SH_SCALE


def point_colors(ibr: Tensor, residual: Tensor) -> Tensor:
    """Final colour: clamp(IBR blend + SH residual, 0, 1)."""
    return (ibr + residual).clamp(0.0, 1.0)
