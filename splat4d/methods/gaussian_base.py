"""What every method built on a plain set of 3D Gaussians shares: initialisation from the scene,
per-Gaussian parameter groups with 3DGS learning rates, densification, and the photometric loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.foreground import foreground_rays, points_on_rays
from splat4d.config_checks import (check_bool, check_choice, check_float, check_int, check_positive_lrs,
                                   validate_nested)
from splat4d.errors import ConfigError
from splat4d.gaussians import Gaussians
from splat4d.methods.base import Batch, Method
from splat4d.render import BACKENDS, RenderOutput, rasterize
from splat4d.train.densify import DensifyConfig, DensifyStrategy, auto_grad_threshold, auto_max_gaussians
from splat4d.train.losses import background_opacity, photometric_loss
from splat4d.train.optim import ParamGroup


@dataclass
class GaussianConfig:
    """Settings shared by Gaussian-set methods."""

    sh_degree: int = 3
    """Spherical-harmonics degree of the colours (0-3)."""
    max_init_points: int = 20000
    """Initial point clouds larger than this are randomly subsampled (CPU memory and speed)."""
    random_init_points: int = 5000
    """Gaussians placed uniformly in the scene box when the scene has no initial points."""
    foreground_init_points: int = 0
    """Gaussians added at random depths in the scene box along rays through training pixels that differ
    from the background (`splat4d.data.foreground`), for content a random or sparse cloud misses (0: none;
    off here: for a static model 5000 of them did not help on the D-NeRF collision scene; `deformable`
    turns them on with its temporal opacity, docs/benchmarks.md)."""
    init_opacity: float = 0.1
    """Initial opacity of every Gaussian."""
    lr_means: float = 1.6e-4
    """Learning rate of the means, times the scene extent (decays to 1/100 over training)."""
    lr_scales: float = 5e-3
    """Learning rate of the log-scales."""
    lr_quats: float = 1e-3
    """Learning rate of the rotations."""
    lr_opacity: float = 5e-2
    """Learning rate of the opacity logits."""
    lr_sh0: float = 2.5e-3
    """Learning rate of the DC colour."""
    lr_shN: float = 2.5e-3 / 20
    """Learning rate of the higher SH bands."""
    sh_interval: int = 1000
    """Raise the active SH degree by one every this many iterations (3DGS's schedule)."""
    lambda_ssim: float = 0.2
    """Weight of D-SSIM in the photometric loss (1 - lambda) L1 + lambda (1 - SSIM)."""
    lambda_mask: float = 0.0
    """Weight of an L1 loss between the rendered alpha and the scene's foreground mask (0: off; needs masks)."""
    lambda_background: float = 0.0
    """Weight of the mean opacity rendered over pixels that show the background colour
    (`train.losses.background_opacity`, as `adcgs`'s term; 0: off). On a black-sky capture, black
    Gaussians in front of the sky cost nothing in the training views: MuJoCo toss, deformable seed 1, had a
    few near the top of the scene box that covered 39 % of the held-out camera's view (11.2 dB; see
    docs/benchmarks.md)."""
    backend: str = "auto"
    """Rasterizer backend: auto, cpu, torch or cuda."""
    antialiased: bool = False
    """Opacity compensation for the eps2d blur (gsplat's antialiased mode)."""
    fused_cpu: bool = True
    """CPU backend: project, evaluate SH (and, in `deformable`, run the deformation heads) in fused numba
    kernels / batched matrix products. False: the unfused torch ops (kept for comparison)."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Adaptive density control."""

    def validate(self, prefix: str = "method") -> None:
        """Raise ConfigError naming the first setting out of range (see splat4d.config_checks)."""
        check_int(f"{prefix}.sh_degree", self.sh_degree, 0, 3)
        check_int(f"{prefix}.max_init_points", self.max_init_points, 1)
        check_int(f"{prefix}.random_init_points", self.random_init_points, 1)
        check_int(f"{prefix}.foreground_init_points", self.foreground_init_points, 0)
        check_float(f"{prefix}.init_opacity", self.init_opacity, 0, 1, lo_open=True, hi_open=True)
        check_positive_lrs(self, prefix, ("lr_means", "lr_scales", "lr_quats", "lr_opacity", "lr_sh0", "lr_shN"))
        check_int(f"{prefix}.sh_interval", self.sh_interval, 1)
        check_float(f"{prefix}.lambda_ssim", self.lambda_ssim, 0, 1)
        check_float(f"{prefix}.lambda_mask", self.lambda_mask, 0)
        check_float(f"{prefix}.lambda_background", self.lambda_background, 0)
        check_choice(f"{prefix}.backend", self.backend, BACKENDS)
        check_bool(f"{prefix}.antialiased", self.antialiased)
        check_bool(f"{prefix}.fused_cpu", self.fused_cpu)
        validate_nested(self, "densify", DensifyConfig, prefix)


class GaussianMethod(Method):
    """Base of methods whose primitives are one `Gaussians` set (static, deformable, ...)."""

    def __init__(self, cfg: GaussianConfig, gaussians: Gaussians, extent: float):
        super().__init__(cfg)
        self.gaussians = gaussians
        device = gaussians.means.device
        self.register_buffer("extent", torch.tensor(float(extent), device=device))
        self.register_buffer("active_sh", torch.tensor(0, device=device))
        self.strategy = DensifyStrategy(cfg.densify, extent)

    @staticmethod
    def init_gaussians(scene, cfg: GaussianConfig, generator: torch.Generator | None = None,
                       temporal: tuple[float, float] | None = None) -> tuple[Gaussians, float]:
        """Initial Gaussians and scene extent. Also resolves scene-dependent settings in `cfg` in place
        (densify.grad_threshold 0 -> `auto_grad_threshold`, densify.max_gaussians 0 -> `auto_max_gaussians`),
        so the saved config shows what was used.

        `temporal` = (scale, ray_scale) gives the Gaussians a temporal opacity: points of the scene's cloud
        (or the random box) are centred at uniform random times with standard deviation `scale`; points on
        foreground rays at the time of the view the ray comes from, with `ray_scale` (they stand for what
        that view showed then)."""
        if cfg.densify.grad_threshold <= 0:
            cfg.densify.grad_threshold = auto_grad_threshold(scene.views_per_time("train"))
        bounds = scene.bounds.float()
        extent = float((bounds[1] - bounds[0]).norm()) / 2
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        if scene.points is not None and len(scene.points) > 0:
            pts = scene.points.float()
            cols = scene.point_colors.float() if scene.point_colors is not None else torch.full_like(pts, 0.5)
            if len(pts) > cfg.max_init_points:
                idx = torch.randperm(len(pts), generator=gen, device="cpu")[: cfg.max_init_points]
                pts, cols = pts[idx], cols[idx]
        else:
            lo, hi = bounds[0], bounds[1]
            pts = lo + (hi - lo) * torch.rand(cfg.random_init_points, 3, generator=gen, device="cpu")
            cols = torch.rand(cfg.random_init_points, 3, generator=gen, device="cpu")
        # drawn only for a temporal model, so other runs consume the generator as before
        times = torch.rand(len(pts), generator=gen, device="cpu") if temporal else torch.zeros(len(pts), device="cpu")
        t_log_scales = torch.full((len(pts),), math.log(temporal[0]) if temporal else 0.0, device="cpu")
        if cfg.foreground_init_points > 0 or cfg.densify.max_gaussians <= 0:
            rays = foreground_rays(scene)
            fg_pts, fg_cols, fg_times = points_on_rays(rays, bounds, cfg.foreground_init_points, gen)
            pts, cols, times = torch.cat([pts, fg_pts]), torch.cat([cols, fg_cols]), torch.cat([times, fg_times])
            fg_scale = math.log(temporal[1]) if temporal else 0.0
            t_log_scales = torch.cat([t_log_scales, torch.full((len(fg_pts),), fg_scale, device="cpu")])
            if cfg.densify.max_gaussians <= 0:
                cfg.densify.max_gaussians = auto_max_gaussians(rays.pixels_per_view, len(pts))
        g = Gaussians.from_points(pts, cols, cfg.sh_degree, cfg.init_opacity)
        if temporal:
            g = Gaussians(*(getattr(g, k) for k in g.fields), times, t_log_scales)
        return g, extent

    # ------------------------------------------------------------- training
    def gaussian_param_groups(self, total_steps: int) -> list[ParamGroup]:
        self.strategy.total_steps = total_steps
        c, g, e = self.cfg, self.gaussians, float(self.extent)
        return [
            ParamGroup("means", [g.means], c.lr_means * e, c.lr_means * e / 100, total_steps, per_gaussian=True),
            ParamGroup("log_scales", [g.log_scales], c.lr_scales, per_gaussian=True),
            ParamGroup("quats", [g.quats], c.lr_quats, per_gaussian=True),
            ParamGroup("opacity_logits", [g.opacity_logits], c.lr_opacity, per_gaussian=True),
            ParamGroup("sh0", [g.sh0], c.lr_sh0, per_gaussian=True),
            ParamGroup("shN", [g.shN], c.lr_shN, per_gaussian=True),
        ]

    def param_groups(self, total_steps: int) -> list[ParamGroup]:
        return self.gaussian_param_groups(total_steps)

    @property
    def fused_optimizer(self) -> bool:
        return self.cfg.fused_cpu

    @property
    def wants_alphas(self) -> bool:
        return self.cfg.lambda_mask > 0

    def photometric(self, batch: Batch, outs: list[RenderOutput]) -> tuple[Tensor, dict]:
        """(1 - lambda_ssim) L1 + lambda_ssim (1 - SSIM), plus lambda_mask times the L1 distance of the
        rendered alpha to `batch.alphas` when lambda_mask > 0, plus lambda_background times the opacity
        over background-coloured pixels when lambda_background > 0."""
        pred = torch.cat([o.rgb for o in outs])
        loss, logs = photometric_loss(pred, batch.images, self.cfg.lambda_ssim, fused=self.cfg.fused_cpu)
        if self.cfg.lambda_mask > 0:
            if batch.alphas is None:
                raise ConfigError("lambda_mask > 0 needs foreground masks in the batch (Batch.alphas is None)")
            alpha = torch.cat([o.alpha for o in outs])[..., 0]  # [C, H, W]
            mask_l1 = (alpha - batch.alphas).abs().mean()
            loss = loss + self.cfg.lambda_mask * mask_l1
            logs["mask_l1"] = float(mask_l1.detach())
        if self.cfg.lambda_background > 0:
            bg_alpha = background_opacity(torch.cat([o.alpha for o in outs])[..., 0], batch.images, batch.background)
            loss = loss + self.cfg.lambda_background * bg_alpha
            logs["background_alpha"] = float(bg_alpha.detach())
        return loss, logs

    def loss(self, batch: Batch, outs: list[RenderOutput], step: int) -> tuple[Tensor, dict]:
        return self.photometric(batch, outs)

    def on_step(self, step: int) -> None:
        self.active_sh.fill_(min(step // max(self.cfg.sh_interval, 1), self.gaussians.sh_degree))

    def after_backward(self, outs: list[RenderOutput], step: int) -> None:
        self.strategy.after_backward(self.gaussians, [o.meta for o in outs], step)

    def after_step(self, opt: torch.optim.Optimizer, step: int) -> dict:
        return self.strategy.after_step(self.gaussians, opt, step)

    def extra_state(self) -> dict:
        return {"densify": self.strategy.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if "densify" in state:
            self.strategy.load_state_dict(state["densify"])

    @property
    def num_primitives(self) -> int:
        return len(self.gaussians)

    # ------------------------------------------------------------ rendering
    def splat(self, means, quats, scales, opacities, sh, cameras: Cameras, background, **kw) -> RenderOutput:
        return rasterize(
            means, quats, scales, opacities, sh, cameras, background=background,
            sh_degree=int(self.active_sh), backend=self.cfg.backend, antialiased=self.cfg.antialiased,
            fused_cpu=self.cfg.fused_cpu, **kw,
        )
