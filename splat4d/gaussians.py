"""`Gaussians`: a set of 3D Gaussians as raw (unactivated) learnable tensors, in the 3DGS convention.

Raw parameters: means [N, 3], quats [N, 4] (wxyz, unnormalised), log_scales [N, 3], opacity_logits [N],
sh0 [N, 1, 3] (DC), shN [N, K-1, 3]; optionally a temporal opacity per Gaussian, t_means [N] (the time
at which it is most opaque) and t_log_scales [N] (log of its standard deviation in time), as in 4D
Gaussian splatting with a time axis (Yang et al. 2024) and Spacetime Gaussians. Activated views are what
the rasterizer takes. Densification edits the set through `replace` which keeps each tensor an
`nn.Parameter` registered under the same name.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from splat4d.fields.sh import num_sh_bases, rgb_to_sh

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")
TEMPORAL_FIELDS = ("t_means", "t_log_scales")
"""Optional per-Gaussian temporal opacity: present together or not at all."""


class Gaussians(nn.Module):
    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor, sh0: Tensor, shN: Tensor,
                 t_means: Tensor | None = None, t_log_scales: Tensor | None = None):
        super().__init__()
        for name, t in zip(FIELDS, (means, quats, log_scales, opacity_logits, sh0, shN)):
            setattr(self, name, nn.Parameter(t.detach().clone().contiguous()))
        if (t_means is None) != (t_log_scales is None):
            raise ValueError("t_means and t_log_scales come together")
        self.temporal = t_means is not None
        if self.temporal:
            self.t_means = nn.Parameter(t_means.detach().clone().contiguous())  # [N] in [0, 1]
            self.t_log_scales = nn.Parameter(t_log_scales.detach().clone().contiguous())  # [N]

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the per-Gaussian tensors this set holds (FIELDS, plus TEMPORAL_FIELDS when temporal)."""
        return FIELDS + TEMPORAL_FIELDS if self.temporal else FIELDS

    def with_temporal_opacity(self, t_means: Tensor, t_log_scale: float) -> "Gaussians":
        """The same Gaussians with a temporal opacity: centres `t_means` [N], every log-scale `t_log_scale`."""
        return Gaussians(*(getattr(self, k) for k in FIELDS), t_means,
                         torch.full_like(t_means, float(t_log_scale)))

    # ----------------------------------------------------------- construction
    @staticmethod
    def from_points(
        points: Tensor,  # [P, 3]
        colors: Tensor | None = None,  # [P, 3] in [0, 1]
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
    ) -> "Gaussians":
        """Isotropic Gaussians at `points`, scale = init_scale x mean distance to the 3 nearest neighbours."""
        P, device = points.shape[0], points.device
        points = points.float()
        if colors is None:
            colors = torch.full((P, 3), 0.5, device=device)
        dist = _knn_mean_distance(points, k=3).clamp_min(1e-7)
        log_scales = torch.log(dist * init_scale)[:, None].repeat(1, 3)
        quats = torch.zeros(P, 4, device=device)
        quats[:, 0] = 1.0
        logit = math.log(init_opacity / (1 - init_opacity))
        sh0 = rgb_to_sh(colors.float())[:, None, :]
        shN = torch.zeros(P, num_sh_bases(sh_degree) - 1, 3, device=device)
        return Gaussians(points, quats, log_scales, torch.full((P,), logit, device=device), sh0, shN)

    @staticmethod
    def random_in_box(bounds: Tensor, n: int, sh_degree: int = 3, generator: torch.Generator | None = None) -> "Gaussians":
        """`n` Gaussians uniformly in the box bounds [2, 3] with random colours."""
        lo, hi = bounds[0].float(), bounds[1].float()
        device = generator.device if generator is not None else lo.device
        pts = (lo.to(device) + (hi - lo).to(device) * torch.rand(n, 3, generator=generator, device=device)).to(lo.device)
        return Gaussians.from_points(pts, torch.rand(n, 3, generator=generator, device=device).to(lo.device), sh_degree)

    @staticmethod
    def empty_like_state(state: dict) -> "Gaussians":
        """Zero tensors with the shapes found in a state dict (for loading a checkpoint of another size)."""
        names = FIELDS + TEMPORAL_FIELDS if all(k in state for k in TEMPORAL_FIELDS) else FIELDS
        return Gaussians(*(torch.zeros_like(state[k]) for k in names))

    # ------------------------------------------------------------- accessors
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(math.isqrt(self.shN.shape[1] + 1)) - 1

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    def temporal_factor(self, t: float) -> Tensor | None:
        """[N] multiplier of the opacities at time t, exp(-(t - t_mean)^2 / (2 t_scale^2)); None when not temporal."""
        if not self.temporal:
            return None
        return torch.exp(-0.5 * ((t - self.t_means) * torch.exp(-self.t_log_scales)).square())

    @property
    def sh(self) -> Tensor:  # [N, K, 3]
        return torch.cat([self.sh0, self.shN], dim=1)

    def params(self) -> dict[str, nn.Parameter]:
        return {k: getattr(self, k) for k in self.fields}

    def replace(self, tensors: dict[str, Tensor]) -> dict[str, nn.Parameter]:
        """Swap in new tensors for the named fields (a new N needs all fields); returns the new Parameters."""
        out = {}
        for k in tensors:
            p = nn.Parameter(tensors[k].detach().contiguous())
            setattr(self, k, p)
            out[k] = p
        return out

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        # the number of Gaussians changes during training: adopt the saved shapes
        if all(k in state for k in self.fields):
            self.replace({k: state[k] for k in self.fields})
        return super().load_state_dict(state, strict=strict, assign=assign)


def _knn_mean_distance(points: Tensor, k: int = 3, chunk: int = 512) -> Tensor:
    """Mean distance to the k nearest other points, in chunks to bound memory. [P]"""
    P = points.shape[0]
    if P <= 1:
        return torch.full((P,), 0.01, device=points.device)
    k = min(k, P - 1)
    out = torch.empty(P, device=points.device)
    for i in range(0, P, chunk):
        d = torch.cdist(points[i : i + chunk], points)
        rows = torch.arange(d.shape[0], device=points.device)
        d[rows, rows + i] = float("inf")
        out[i : i + chunk] = d.topk(k, largest=False).values.mean(1)
    return out
