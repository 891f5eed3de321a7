"""`static`: plain 3D Gaussians fit to every frame. The sanity baseline: it cannot move."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.gaussians import Gaussians
from splat4d.methods.base import register
from splat4d.methods.gaussian_base import GaussianConfig, GaussianMethod
from splat4d.render import RenderOutput


@dataclass
class StaticConfig(GaussianConfig):
    """Static 3D Gaussian splatting (time is ignored)."""


@register
class StaticGaussians(GaussianMethod):
    name = "static"
    Config = StaticConfig

    @classmethod
    def from_scene(cls, scene, cfg: StaticConfig, generator: torch.Generator | None = None) -> "StaticGaussians":
        gaussians, extent = cls.init_gaussians(scene, cfg, generator)
        return cls(cfg, gaussians, extent)

    @classmethod
    def empty(cls, cfg: StaticConfig, state: dict) -> "StaticGaussians":
        g = Gaussians.empty_like_state({k[len("gaussians."):]: v for k, v in state.items() if k.startswith("gaussians.")})
        return cls(cfg, g, float(state["extent"]))

    def render(self, cameras: Cameras, t: float, background: Tensor | None = None, **kw) -> RenderOutput:
        g = self.gaussians
        return self.splat(g.means, g.quats, g.scales, g.opacities, g.sh, cameras, background, **kw)

    def gaussians_at(self, t: float) -> dict[str, Tensor]:
        """Activated Gaussians at time t (for export)."""
        g = self.gaussians
        return {"means": g.means, "quats": g.quats, "scales": g.scales, "opacities": g.opacities, "sh": g.sh}
