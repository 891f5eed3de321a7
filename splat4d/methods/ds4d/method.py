"""`ds4d`: DS4D (§3) on the deformable 4D Gaussians.

One camera's frames are the input video (the "front" view), some other cameras' frames the pseudo
multi-view images; `prepare_scene` makes them the training split and, when the pseudo cameras are listed,
holds every other camera out for evaluation. At construction the frame features of the input and pseudo
views at every frame are extracted (`features`), decoupled (`dsfd.decouple`), reduced to
`feature_channels` per part and kept in the model (so eval, render and export need no extractor). The
deformation field takes the HexPlane features of a Gaussian and the TSSF-fused point features
(`tssf`) through a learnable linear map (identity on the HexPlane part, zero on the point features at
the start, so training begins as `deformable` does), then the deformation MLP.

Training as the paper: a warm-up without TSSF and deformation (`coarse_fraction`, 1/7: its 1,000 of
7,000), then both; TSSF and the deformation MLP decay to `lr_final_ratio` (1.6e-4 -> 1.6e-6 in the paper,
x100; the starting rates here are `deformable`'s CPU-budget ones); the top 2.5 % of gradients grow
(`densify.grow_fraction`); photometric loss on the input view; on pseudo views LPIPS (VGG) when its
weights exist, otherwise a photometric loss times `pseudo_weight` and a warning. The paper's SDS term
from a multi-view diffusion prior is not part of this method (no prior runs here).

Table 2's rows are flag sets (`TABLE2`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from splat4d.config_checks import check_bool, check_choice, check_float, check_int, check_ints, check_positive_lrs, check_str
from splat4d.data.scene import DynamicScene, select_cameras
from splat4d.errors import ConfigError, DatasetError
from splat4d.gaussians import Gaussians
from splat4d.methods.base import Batch, register
from splat4d.methods.deformable import Deformation, DeformableConfig, DeformableGaussians
from splat4d.methods.ds4d import features as feat
from splat4d.methods.ds4d.dsfd import decouple
from splat4d.methods.ds4d.tssf import FUSIONS, Fusion, point_features
from splat4d.metrics import psnr
from splat4d.render import RenderOutput
from splat4d.train.densify import DensifyConfig
from splat4d.train.losses import photometric_loss

FEATURE_KINDS = ("dinov2", "patch", "none")
TABLE2 = {
    "A": dict(random_init=True, lambda_lpips=0.0, features="none"),
    "B": dict(lambda_lpips=0.0, features="none"),
    "C": dict(features="none"),
    "D": dict(decouple=False, fusion="front"),
    "E": dict(fusion="front"),
    "F": dict(fusion="mean"),
    "G": dict(fusion="ga"),
    "H": dict(fusion="da"),
}
"""DS4D's Table 2 rows as config overrides on the defaults (which are row H with the default extractor):
A without point initialisation (random box) and without LPIPS, B with points, C with LPIPS on pseudo
views, D with frame features (no decoupling, front view), E with DSFD, F with TSSF average pooling, G with
TSSF-GA, H with TSSF-DA. Without LPIPS weights, C and later rows fall back to the pseudo-view photometric
loss (as A and B use), so on such a machine B and C are the same run."""


@dataclass
class DS4DConfig(DeformableConfig):
    """DS4D: deformable 4D Gaussians whose deformation also sees decoupled, fused frame features."""

    input_camera: int = 0
    """Camera whose frames are the input video (the front view)."""
    pseudo_cameras: tuple[int, ...] = ()
    """Cameras whose frames are the pseudo multi-view images. Listed: the training split is the input and
    these cameras, every other camera is held out (the test split). Empty: every training camera besides
    the input is a pseudo view and the splits stay as the dataset has them."""
    features: str = "dinov2"
    """Frame feature extractor: dinov2 (the paper; weights from --method.dinov2-model), patch (weights-free
    colour/gradient statistics per 14x14 patch, named in every output) or none (no frame features:
    Table 2 rows A-C)."""
    dinov2_model: str = "auto"
    """DINOv2 weights: a local directory or a hub id found in the Hugging Face cache (auto:
    $SPLAT4D_DINOV2_MODEL, else facebook/dinov2-small)."""
    feature_size: int = 224
    """The shorter image side the extractor sees (tokens of 14 px: 224 -> 16 per side)."""
    feature_channels: int = 32
    """Channels kept per part (frame, dynamic) of the decoupled features (leading singular vectors;
    0: all)."""
    feature_cache: str = "auto"
    """Feature cache folder (auto: $SPLAT4D_CACHE/features or ~/.cache/splat4d/features; none: off)."""
    decouple: bool = True
    """DSFD (False: the frame features alone, Table 2 row D)."""
    per_token: bool = True
    """Eq. 1 per token (False: one projection of the whole frame)."""
    fusion: str = "da"
    """TSSF fusion over views: da, ga, mean (average pooling) or front (no TSSF: the input view only)."""
    points_file: Optional[str] = None
    """Initial points from a PLY point cloud or mesh (its vertices; the paper: an LRM mesh of the middle
    frame). Default: the scene's points, else points on the training views' foreground rays."""
    random_init: bool = False
    """Ignore the scene's points and start from the random box (Table 2 row A)."""
    lambda_lpips: float = 1.0
    """Weight of LPIPS (VGG) on pseudo views (0: off; needs LPIPS weights, see docs/metrics.md)."""
    lpips_weights: Optional[str] = None
    """LPIPS weights file (default: $SPLAT4D_LPIPS_WEIGHTS)."""
    pseudo_weight: float = 0.5
    """Weight of the photometric loss on pseudo views when LPIPS is off or unavailable."""
    lr_tssf: float = 1.6e-3
    """Learning rate of the TSSF layers and the feature map (the paper's 1.6e-4 x 10, as lr_deform)."""
    lr_final_ratio: float = 0.01
    """TSSF and deformation MLP decay to this fraction of their rate (the paper: 1.6e-4 -> 1.6e-6)."""
    coarse_fraction: float = 1 / 7
    """Warm-up without TSSF and deformation (the paper: 1,000 of 7,000 iterations)."""
    densify: DensifyConfig = field(default_factory=lambda: DensifyConfig(grow_fraction=0.025))
    """Adaptive density control (the top 2.5 % of gradients grow)."""

    def validate(self, prefix: str = "method") -> None:
        super().validate(prefix)
        check_int(f"{prefix}.input_camera", self.input_camera, 0)
        if self.pseudo_cameras != ():
            check_ints(f"{prefix}.pseudo_cameras", self.pseudo_cameras, 0)
        if self.input_camera in self.pseudo_cameras:
            raise ConfigError(f"{prefix}.pseudo_cameras must not hold the input camera {self.input_camera}")
        if len(set(self.pseudo_cameras)) != len(self.pseudo_cameras):
            raise ConfigError(f"{prefix}.pseudo_cameras lists a camera twice: {self.pseudo_cameras}")
        check_choice(f"{prefix}.features", self.features, FEATURE_KINDS)
        check_str(f"{prefix}.dinov2_model", self.dinov2_model)
        check_int(f"{prefix}.feature_size", self.feature_size, 14, 2048)
        check_int(f"{prefix}.feature_channels", self.feature_channels, 0)
        check_str(f"{prefix}.feature_cache", self.feature_cache)
        for name in ("decouple", "per_token", "random_init"):
            check_bool(f"{prefix}.{name}", getattr(self, name))
        check_choice(f"{prefix}.fusion", self.fusion, FUSIONS)
        check_str(f"{prefix}.points_file", self.points_file, optional=True)
        check_float(f"{prefix}.lambda_lpips", self.lambda_lpips, 0)
        check_str(f"{prefix}.lpips_weights", self.lpips_weights, optional=True)
        check_float(f"{prefix}.pseudo_weight", self.pseudo_weight, 0)
        check_positive_lrs(self, prefix, ("lr_tssf",))
        check_float(f"{prefix}.lr_final_ratio", self.lr_final_ratio, 0, 1, lo_open=True)


class FusedDeformation(Deformation):
    """Deformation whose trunk input is Linear([HexPlane features, fused point features]) (DS4D §3.4)."""

    def __init__(self, cfg: DS4DConfig, bounds: Tensor, time_res: int, sh_dim: int, channels: int):
        super().__init__(cfg, bounds, time_res, sh_dim)
        self.fusion = Fusion(channels, cfg.fusion)
        F = self.hexplane.feat_dim
        self.mix = nn.Linear(F + self.fusion.out_dim, F)
        with torch.no_grad():  # starts as the HexPlane alone: `deformable` at step 0
            self.mix.weight.zero_()
            self.mix.weight[:, :F] = torch.eye(F, device=self.mix.weight.device)
            self.mix.bias.zero_()

    def with_points(self, xyz: Tensor, t: float, point_feats: Tensor) -> dict[str, Tensor]:
        mixed = self.mix(torch.cat([self.hexplane(xyz, t), self.fusion(point_feats)], dim=-1))
        return self.decode(mixed)


@register
class DS4D(DeformableGaussians):
    name = "ds4d"
    Config = DS4DConfig

    def __init__(self, cfg: DS4DConfig, gaussians: Gaussians, extent: float, bounds: Tensor, time_res: int,
                 grids: Tensor, viewmats: Tensor, Ks: Tensor, size: Tensor, frame_times: Tensor):
        fused = None
        if cfg.features != "none":
            fused = FusedDeformation(cfg, bounds, time_res, gaussians.sh.shape[1] * 3, grids.shape[-1])
        super().__init__(cfg, gaussians, extent, bounds, time_res, fused)
        for name, value in (("grids", grids), ("feature_viewmats", viewmats), ("feature_Ks", Ks),
                            ("feature_size", size), ("frame_times", frame_times)):
            self.register_buffer(name, value.to(gaussians.means.device))
        self.pseudo_flags: Tensor | None = None  # [train views] True for pseudo views (set by from_scene)
        self._lpips = None
        self.pseudo_loss = "photometric"
        self._times: np.ndarray | None = None  # frame_times on the host (read on every render)
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_times", None))

    # ------------------------------------------------------------- scene and construction
    @classmethod
    def prepare_scene(cls, scene: DynamicScene, cfg: DS4DConfig) -> DynamicScene:
        """Training split = the input and pseudo cameras; with pseudo cameras listed, every other camera
        (from any split) is the test split."""
        cams = {v.cam_id for views in scene.splits.values() for v in views}
        for c in (cfg.input_camera, *cfg.pseudo_cameras):
            if c not in cams:
                raise DatasetError(f"ds4d: scene {scene.name!r} has no camera {c} (cameras: {sorted(cams)})")
        return select_cameras(scene, (cfg.input_camera, *cfg.pseudo_cameras) if cfg.pseudo_cameras else ())

    @classmethod
    def from_scene(cls, scene, cfg: DS4DConfig, generator: torch.Generator | None = None) -> "DS4D":
        if cfg.points_file:
            from splat4d.io.ply import load_points_ply

            pts, cols = load_points_ply(cfg.points_file)
            scene = dataclasses.replace(scene, points=pts.float(), point_colors=None if cols is None else cols.float())
        if cfg.random_init:
            scene = dataclasses.replace(scene, points=None, point_colors=None)
        rows, cameras, times = feature_views(scene, cfg)
        grids = scene_features(scene, rows, cfg)
        gaussians, extent, bounds, time_res = cls.initial_parts(scene, cfg, generator)
        size = torch.tensor([cameras.width, cameras.height], device="cpu")
        method = cls(cfg, gaussians, extent, bounds, time_res, grids, cameras.viewmats.float(),
                     cameras.Ks.float(), size, times)
        method.set_training_views(scene, cfg)
        return method

    @classmethod
    def empty(cls, cfg: DS4DConfig, state: dict) -> "DS4D":
        g = Gaussians.empty_like_state({k[len("gaussians."):]: v for k, v in state.items() if k.startswith("gaussians.")})
        bufs = [torch.zeros_like(state[k]) for k in ("grids", "feature_viewmats", "feature_Ks", "feature_size", "frame_times")]
        return cls(cfg, g, float(state["extent"]), state["deformation.hexplane.bounds"], int(state["time_res"]), *bufs)

    def set_training_views(self, scene, cfg: DS4DConfig) -> None:
        """Mark the pseudo views of the training split and choose their loss (LPIPS or photometric)."""
        self.pseudo_flags = torch.tensor([v.cam_id != cfg.input_camera for v in scene.split("train")], device="cpu")
        if cfg.lambda_lpips > 0 and bool(self.pseudo_flags.any()):
            from splat4d.metrics import load_lpips, lpips_status

            ok, why = lpips_status("vgg", cfg.lpips_weights or None)
            if ok:
                self._lpips = load_lpips("vgg", cfg.lpips_weights or None, device=self.device).requires_grad_(False)
                self.pseudo_loss = "lpips"
            else:
                warnings.warn(f"ds4d: LPIPS {why}; pseudo views get the photometric loss x {cfg.pseudo_weight}")

    # ------------------------------------------------------------- training
    def param_groups(self, total_steps: int):
        groups = super().param_groups(total_steps)
        r = self.cfg.lr_final_ratio
        groups = [dataclasses.replace(g, lr_final=g.lr * r) if g.name == "deform_mlp" else g for g in groups]
        if isinstance(self.deformation, FusedDeformation):
            d, start = self.deformation, int(self.coarse_iters)
            params = list(d.fusion.parameters()) + list(d.mix.parameters())
            c = self.cfg
            groups.append(dataclasses.replace(groups[-1], name="tssf", params=params, lr=c.lr_tssf,
                                              lr_final=c.lr_tssf * r, decay_steps=total_steps - start, start=start))
        return groups

    def loss(self, batch: Batch, outs: list[RenderOutput], step: int) -> tuple[Tensor, dict]:
        pred = torch.cat([o.rgb for o in outs])
        if self.pseudo_flags is None:
            raise ConfigError("ds4d: training views were not set (build the method with from_scene)")
        pseudo = self.pseudo_flags[batch.index.cpu()].to(pred.device)
        c, logs, total = self.cfg, {}, pred.new_zeros(())
        n = len(pred)
        if (~pseudo).any():
            loss, logs = photometric_loss(pred[~pseudo], batch.images[~pseudo], c.lambda_ssim, fused=c.fused_cpu)
            total = total + loss * int((~pseudo).sum()) / n
        if pseudo.any():
            p, ref = pred[pseudo], batch.images[pseudo]
            if self.pseudo_loss == "lpips":
                if self._lpips.shift.device != p.device:  # the Trainer moves the method after from_scene
                    self._lpips.to(p.device)
                lp = self._lpips(p.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2)).mean()
                loss, extra = c.lambda_lpips * lp, {"lpips": float(lp.detach())}
            else:
                loss, extra = photometric_loss(p, ref, c.lambda_ssim, fused=c.fused_cpu)
                loss = c.pseudo_weight * loss
                extra = {"pseudo_l1": extra["l1"]}
            total = total + loss * int(pseudo.sum()) / n
            logs.update(extra)
        if c.lambda_mask > 0:
            alpha = torch.cat([o.alpha for o in outs])[..., 0]
            total = total + c.lambda_mask * (alpha - batch.alphas).abs().mean()
        logs["l1"] = float((pred.detach() - batch.images).abs().mean())
        logs["psnr"] = float(psnr(pred.detach(), batch.images))  # over input and pseudo views alike
        return self.regularised(total, logs)

    def describe(self) -> dict:
        c = self.cfg
        kinds = {"dinov2": f"dinov2 ({c.dinov2_model})", "none": "none (no frame features)",
                 "patch": "patch (weights-free per-patch colour and gradient statistics, not DINOv2)"}
        return {"features": kinds[c.features], "fusion": c.fusion if c.features != "none" else "none",
                "decouple": bool(c.decouple and c.features != "none")}

    # ------------------------------------------------------------ rendering
    def frame_index(self, t: float) -> float:
        """Fractional index of time t among the feature frames (linear between neighbours)."""
        if self._times is None:
            self._times = self.frame_times.detach().cpu().numpy()
        times = self._times
        return float(np.interp(float(t), times, np.arange(len(times)))) if len(times) > 1 else 0.0

    def deform(self, means: Tensor, t: float) -> dict[str, Tensor]:
        if not isinstance(self.deformation, FusedDeformation):
            return super().deform(means, t)
        size = (int(self.feature_size[0]), int(self.feature_size[1]))
        pf = point_features(self.grids, self.feature_viewmats, self.feature_Ks, size, means.detach(),
                            self.frame_index(t))
        return self.deformation.with_points(means, t, pf)


def feature_views(scene, cfg: DS4DConfig):
    """The training views of the input and pseudo cameras frame by frame: (rows [T][V] of Views, their
    V cameras, the T frame times). Every feature camera must see every frame of the input camera."""
    train = scene.split("train")
    by_cam: dict[int, dict[int, object]] = {}
    for v in train:
        by_cam.setdefault(v.cam_id, {})[v.frame_id] = v
    if cfg.input_camera not in by_cam:
        raise DatasetError(f"ds4d: the input camera {cfg.input_camera} has no training views in {scene.name!r}")
    pseudo = list(cfg.pseudo_cameras) or sorted(c for c in by_cam if c != cfg.input_camera)
    cams = [cfg.input_camera, *pseudo]
    frames = sorted(by_cam[cfg.input_camera], key=lambda f: by_cam[cfg.input_camera][f].time)
    rows = []
    for f in frames:
        missing = [c for c in cams if f not in by_cam.get(c, {})]
        if missing:
            raise DatasetError(f"ds4d: camera(s) {missing} have no view of frame {f} in {scene.name!r}; every "
                               f"input and pseudo camera must see every frame of the input video")
        rows.append([by_cam[c][f] for c in cams])
    from splat4d.cameras import Cameras

    cameras = Cameras.cat([scene.camera(v) for v in rows[0]])
    times = torch.tensor([row[0].time for row in rows], dtype=torch.float32, device="cpu")
    return rows, cameras, times


def scene_features(scene, rows, cfg: DS4DConfig) -> Tensor:
    """Decoupled, reduced features [T, V, Ph, Pw, C] of the feature views (C = 2 x feature_channels, or the
    extractor's 2D; [T, V, 1, 1, 1] zeros with features "none")."""
    if cfg.features == "none":
        return torch.zeros(len(rows), len(rows[0]), 1, 1, 1, device="cpu")
    small = torch.stack([torch.stack([_small(scene.image(v), cfg.feature_size) for v in row]) for row in rows])
    extractor = feat.make_extractor(cfg.features, cfg.feature_size, cfg.dinov2_model)
    grids = feat.frame_features(small, extractor, feat.cache_dir(cfg.feature_cache))  # [T, V, Ph, Pw, D]
    T, V, Ph, Pw, D = grids.shape
    flat = grids.reshape(T, V, Ph * Pw, D)
    if cfg.decouple:
        flat = decouple(flat, per_token=cfg.per_token)
    else:
        flat = torch.cat([flat, torch.zeros_like(flat)], dim=-1)  # row D: frame features, no dynamic part
    flat = feat.reduce_channels(flat, cfg.feature_channels)
    return flat.reshape(T, V, Ph, Pw, -1).contiguous()


def _small(image: Tensor, size: int) -> Tensor:
    """An image [H, W, 3] resized to the extractor's token grid x 14 (so features never hold full images)."""
    return feat.resize_to_grid(image[None], size)[0].permute(1, 2, 0).clamp(0, 1)
