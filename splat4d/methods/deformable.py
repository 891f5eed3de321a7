"""`deformable`: the 4DGaussians baseline. Canonical 3D Gaussians deformed at time t by a HexPlane field
and small MLP heads (additive updates of position, log-scale, rotation and optionally opacity and SH).

Training starts with a static "coarse" stage (no deformation), then switches the deformation on; the
HexPlane's total-variation, time-smoothness and time-plane L1 regularisers join the loss then.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splat4d.cameras import Cameras
from splat4d.config_checks import check_bool, check_float, check_int, check_ints, check_positive_lrs
from splat4d.fields.hexplane import HexPlane
from splat4d.fields.mlp import MLP
from splat4d.fields.sparse_mlp import mlp_rows
from splat4d.gaussians import Gaussians
from splat4d.methods.base import Batch, register
from splat4d.methods.gaussian_base import GaussianConfig, GaussianMethod
from splat4d.render import RenderOutput
from splat4d.train.optim import ParamGroup


@dataclass
class DeformableConfig(GaussianConfig):
    """Deformable 4D Gaussians (4DGaussians): canonical Gaussians + HexPlane + deformation MLP."""

    coarse_fraction: float = 0.15
    """Fraction of the iterations spent in the static coarse stage before deformation switches on."""
    grid_resolution: tuple[int, int, int] = (64, 64, 64)
    """Spatial resolution of the HexPlane's base scale."""
    time_resolution: int = 0
    """Time resolution of the HexPlane (0: from the capture, `auto_time_resolution`)."""
    grid_dim: int = 16
    """Channels per plane."""
    multires: tuple[int, ...] = (1, 2)
    """Spatial resolution multipliers of the HexPlane scales."""
    width: int = 64
    """Width of the deformation MLP."""
    depth: int = 1
    """Hidden layers of the deformation trunk."""
    deform_opacity: bool = False
    """Also predict an opacity update."""
    deform_sh: bool = False
    """Also predict an SH update."""
    lambda_background: float = 0.05
    """As GaussianConfig.lambda_background, on by default here: without it MuJoCo toss seed 1 left black
    floaters in front of the sky that only the held-out camera saw against something else (11.16 dB; 23.93
    with 0.05). Neutral where nothing failed: toss seed 0 23.73 -> 24.22, D-NeRF collision 29.61 -> 29.81,
    synthetic default 26.71 -> 26.70 (docs/benchmarks.md). Tables fitted before this default say so."""
    foreground_init_points: int = 5000
    """Gaussians added at random depths along rays through training pixels that differ from the background
    (`splat4d.data.foreground`); with `temporal_opacity` each is centred at the time of the view its ray
    comes from (densify.clone_t_scale wide), so every time step starts with Gaussians where something was
    seen then (0: none). Without them a fast object is missing wherever the initial cloud had no points
    (docs/benchmarks.md, rapid motion)."""
    temporal_opacity: bool = True
    """Give every Gaussian a temporal opacity, exp(-(t - t_mean)^2 / (2 t_scale^2)) times its opacity, with
    learned t_mean and t_scale (as in 4D Gaussian splatting and Spacetime Gaussians), so content that is
    somewhere only for a while need not be moved away or hidden by the deformation field. Without it a
    fast-moving object in a monocular capture is lost: the static stage and every other time step erase the
    Gaussians one time step needs (D-NeRF collision at 3000 iterations: 18.15 dB off, 29.74 on, with
    foreground_init_points). False: 4DGaussians' model exactly."""
    t_scale_init: float = 0.25
    """Initial temporal standard deviation (fraction of the clip); centres start uniform in [0, 1]."""
    lr_t_means: float = 1e-3
    """Learning rate of the temporal centres."""
    lr_t_scales: float = 5e-3
    """Learning rate of the temporal log-scales."""
    lr_grid: float = 1.6e-2
    """HexPlane learning rate (decays to 1/100). 10x 4DGaussians' 1.6e-3, which is tuned for ~14k dynamic
    iterations; at the few thousand a CPU run affords, motion is otherwise barely learned."""
    lr_deform: float = 1.6e-3
    """Deformation MLP learning rate (decays to 1/10); 10x 4DGaussians' 1.6e-4 for the same reason."""
    plane_tv_weight: float = 2e-4
    """Weight of the spatial-plane total variation."""
    time_smoothness_weight: float = 1e-3
    """Weight of the time planes' second-difference smoothness."""
    time_l1_weight: float = 1e-4
    """Weight of the time planes' L1 distance to 1 (no motion)."""

    def validate(self, prefix: str = "method") -> None:
        """Raise ConfigError naming the first setting out of range (see splat4d.config_checks)."""
        super().validate(prefix)
        check_float(f"{prefix}.coarse_fraction", self.coarse_fraction, 0, 1, hi_open=True)
        check_ints(f"{prefix}.grid_resolution", self.grid_resolution, 1, length=3)
        check_int(f"{prefix}.time_resolution", self.time_resolution, 0)
        check_int(f"{prefix}.grid_dim", self.grid_dim, 1)
        check_ints(f"{prefix}.multires", self.multires, 1)
        check_int(f"{prefix}.width", self.width, 1)
        check_int(f"{prefix}.depth", self.depth, 1)
        check_bool(f"{prefix}.deform_opacity", self.deform_opacity)
        check_bool(f"{prefix}.deform_sh", self.deform_sh)
        check_bool(f"{prefix}.temporal_opacity", self.temporal_opacity)
        check_float(f"{prefix}.t_scale_init", self.t_scale_init, 0, lo_open=True)
        check_positive_lrs(self, prefix, ("lr_grid", "lr_deform", "lr_t_means", "lr_t_scales"))
        for name in ("plane_tv_weight", "time_smoothness_weight", "time_l1_weight"):
            check_float(f"{prefix}.{name}", getattr(self, name), 0)


class Deformation(nn.Module):
    """HexPlane features -> trunk -> heads (ReLU, Linear, ReLU, Linear) for each updated attribute.

    With `cfg.fused_cpu` the heads run as one network: their first layers concatenated into one
    Linear(W, heads * W) and their second layers as one block-diagonal Linear, built from the per-head
    parameters on every call (so parameters, state-dict keys and checkpoints are the same either way,
    and outputs equal up to float rounding): two matrix products instead of six, one ReLU of the trunk
    output instead of one per head, and the backward only over the Gaussians whose updates receive a
    gradient (`sparse_mlp`; the HexPlane kernels skip the others too)."""

    def __init__(self, cfg: DeformableConfig, bounds: Tensor, time_res: int, sh_dim: int):
        super().__init__()
        self.hexplane = HexPlane(bounds, (*cfg.grid_resolution, time_res), cfg.grid_dim, cfg.multires,
                                 fused=cfg.fused_cpu)
        W = cfg.width
        self.trunk = MLP(self.hexplane.feat_dim, W, W, max(cfg.depth - 1, 0))
        outs = {"xyz": 3, "scale": 3, "rot": 4}
        if cfg.deform_opacity:
            outs["opacity"] = 1
        if cfg.deform_sh:
            outs["sh"] = sh_dim
        self.heads = nn.ModuleDict({k: nn.Sequential(nn.ReLU(), MLP(W, W, n, 1, out_init_zero=True)) for k, n in outs.items()})
        self.fused = cfg.fused_cpu

    def forward(self, xyz: Tensor, t: float) -> dict[str, Tensor]:
        """Updates {name: [N, n]} of the Gaussians at xyz [N, 3] and time t."""
        return self.decode(self.hexplane(xyz, t))

    def decode(self, feats: Tensor) -> dict[str, Tensor]:
        """Per-Gaussian features [N, F] -> updates {name: [N, n]} (trunk and heads)."""
        if not self.fused:
            h = self.trunk(feats)  # [N, W]
            return {k: head(h) for k, head in self.heads.items()}
        trunk = [m for m in self.trunk.net if isinstance(m, nn.Linear)]
        first = [head[1].net[0] for head in self.heads.values()]
        second = [head[1].net[2] for head in self.heads.values()]
        weights = [m.weight for m in trunk] + [torch.cat([m.weight for m in first]),
                                               torch.block_diag(*[m.weight for m in second])]
        biases = [m.bias for m in trunk] + [torch.cat([m.bias for m in first]), torch.cat([m.bias for m in second])]
        out = mlp_rows(feats, weights, biases)  # [N, sum of head widths]
        return dict(zip(self.heads.keys(), out.split([m.out_features for m in second], dim=1)))


@register
class DeformableGaussians(GaussianMethod):
    name = "deformable"
    Config = DeformableConfig

    def __init__(self, cfg: DeformableConfig, gaussians: Gaussians, extent: float, bounds: Tensor, time_res: int,
                 deformation: Deformation | None = None):
        super().__init__(cfg, gaussians, extent)
        self.deformation = deformation or Deformation(cfg, bounds, time_res, gaussians.sh.shape[1] * 3)
        device = gaussians.means.device
        self.register_buffer("coarse_iters", torch.tensor(0, device=device))
        self.register_buffer("dynamic", torch.tensor(True, device=device))
        self.register_buffer("time_res", torch.tensor(time_res, device=device))

    @classmethod
    def from_scene(cls, scene, cfg: DeformableConfig, generator: torch.Generator | None = None) -> "DeformableGaussians":
        return cls(cfg, *cls.initial_parts(scene, cfg, generator))

    @classmethod
    def initial_parts(cls, scene, cfg: DeformableConfig, generator: torch.Generator | None = None):
        """(Gaussians, scene extent, HexPlane bounds, HexPlane time knots) for a scene."""
        temporal = (cfg.t_scale_init, cfg.densify.clone_t_scale) if cfg.temporal_opacity else None
        gaussians, extent = cls.init_gaussians(scene, cfg, generator, temporal)
        time_res = cfg.time_resolution or auto_time_resolution(scene.num_frames, scene.views_per_time("train"))
        bounds = _padded_bounds(scene.bounds.float(), gaussians.means.detach())
        return gaussians, extent, bounds, time_res

    @classmethod
    def empty(cls, cfg: DeformableConfig, state: dict) -> "DeformableGaussians":
        g = Gaussians.empty_like_state({k[len("gaussians."):]: v for k, v in state.items() if k.startswith("gaussians.")})
        return cls(cfg, g, float(state["extent"]), state["deformation.hexplane.bounds"], int(state["time_res"]))

    # ------------------------------------------------------------- training
    def param_groups(self, total_steps: int) -> list[ParamGroup]:
        c = self.cfg
        self.coarse_iters.fill_(round(c.coarse_fraction * total_steps))
        start = int(self.coarse_iters)
        d = self.deformation
        temporal = []
        if self.gaussians.temporal:
            g = self.gaussians
            temporal = [ParamGroup("t_means", [g.t_means], c.lr_t_means, per_gaussian=True),
                        ParamGroup("t_log_scales", [g.t_log_scales], c.lr_t_scales, per_gaussian=True)]
        return self.gaussian_param_groups(total_steps) + temporal + [
            ParamGroup("hexplane", list(d.hexplane.parameters()), c.lr_grid, c.lr_grid / 100, total_steps - start, start=start),
            ParamGroup("deform_mlp", list(d.trunk.parameters()) + list(d.heads.parameters()), c.lr_deform,
                       c.lr_deform / 10, total_steps - start, start=start),
        ]

    def on_step(self, step: int) -> None:
        super().on_step(step)
        self.dynamic.fill_(step >= int(self.coarse_iters))

    def loss(self, batch: Batch, outs: list[RenderOutput], step: int) -> tuple[Tensor, dict]:
        loss, logs = self.photometric(batch, outs)
        return self.regularised(loss, logs)

    def regularised(self, loss: Tensor, logs: dict) -> tuple[Tensor, dict]:
        """`loss` plus the HexPlane's regularisers once the deformation is on (logged as "reg")."""
        if bool(self.dynamic):
            c, hp = self.cfg, self.deformation.hexplane
            reg = hp.regularisation(c.plane_tv_weight, c.time_smoothness_weight, c.time_l1_weight)
            loss = loss + reg
            logs["reg"] = float(reg.detach())
        return loss, logs

    # ------------------------------------------------------------ rendering
    def deform(self, means: Tensor, t: float) -> dict[str, Tensor]:
        """Updates of the Gaussians with canonical centres `means` at time t (the deformation field)."""
        return self.deformation(means, t)

    def gaussians_at(self, t: float) -> dict[str, Tensor]:
        """Activated Gaussians deformed to time t."""
        g = self.gaussians
        means, log_scales, quats, logits, sh = g.means, g.log_scales, g.quats, g.opacity_logits, g.sh
        if bool(self.dynamic):
            d = self.deform(means, t)
            means, log_scales, quats = means + d["xyz"], log_scales + d["scale"], quats + d["rot"]
            if "opacity" in d:
                logits = logits + d["opacity"][:, 0]
            if "sh" in d:
                sh = sh + d["sh"].reshape(sh.shape)
        opacities = torch.sigmoid(logits)
        if g.temporal:
            opacities = opacities * g.temporal_factor(t)
        return {"means": means, "quats": quats, "scales": torch.exp(log_scales), "opacities": opacities, "sh": sh}

    def render(self, cameras: Cameras, t: float, background: Tensor | None = None, **kw) -> RenderOutput:
        if self.training and self.cfg.deform_opacity:
            kw.setdefault("return_weights", True)  # pruning keeps faint Gaussians that are seen at some time
        if self.training and self.gaussians.temporal:
            kw.setdefault("return_weights", True)
        g = self.gaussians_at(t)
        out = self.splat(g["means"], g["quats"], g["scales"], g["opacities"], g["sh"], cameras, background, **kw)
        if self.gaussians.temporal:  # a Gaussian too faint at this time to draw a pixel is not seen in this view
            out.meta["visible"] = out.meta["visible"] & (g["opacities"] >= 1.0 / 255.0).to(out.meta["visible"].device)
            out.meta["time"] = float(t)  # densification centres clones at the time they were needed
        return out


MAX_TIME_RESOLUTION = 150


def auto_time_resolution(num_frames: int, views_per_time: float) -> int:
    """HexPlane time knots for a capture: one per frame when several cameras see each frame, one per two
    frames in a monocular capture (each frame is one image, so a knot is fitted from two), at most 150
    (4DGaussians' Neu3D setting for 300 frames) and at least 2. A fixed cap of 25 left a ball crossing the
    image in 150 frames with a knot every 6 frames, so its path was cut into straight segments."""
    frames = max(int(num_frames), 2)
    per_knot = 1 if views_per_time >= 2 else 2
    return max(2, min(MAX_TIME_RESOLUTION, -(-frames // per_knot)))


def _padded_bounds(bounds: Tensor, points: Tensor) -> Tensor:
    """The scene box grown to hold the initial points, plus 10% so Gaussians can move outwards."""
    lo = torch.minimum(bounds[0], points.min(0).values) if len(points) else bounds[0]
    hi = torch.maximum(bounds[1], points.max(0).values) if len(points) else bounds[1]
    pad = 0.1 * (hi - lo)
    return torch.stack([lo - pad, hi + pad])
