"""`adcgs`: ADC-GS (anchor-driven deformable Gaussians with rate-distortion optimisation) as a method.

Training stages (fractions of the run, ADC-GS's code at 8k / 10k / 15k of 80k iterations): a static warm-up
(no deformation), then the coarse-to-fine deformation, then quantisation of the anchor attributes (uniform
noise, `entropy_model`), then the rate term lambda_e R. Anchors are refined on the way (eq. 11, `refine`).
At evaluation the attributes are rounded exactly as the bitstream stores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.config_checks import check_bool, check_choice, check_float, check_int, check_positive_lrs
from splat4d.data.foreground import dynamic_rays, foreground_rays
from splat4d.methods.adcgs.anchors import AnchorDims, AnchorField, render_colors, sh_coefficients
from splat4d.methods.adcgs.entropy_model import EntropyDims, EntropyModel
from splat4d.methods.adcgs.refine import AnchorRefiner
from splat4d.methods.base import Batch, Method, register
from splat4d.methods.deformable import auto_time_resolution
from splat4d.render import BACKENDS, RenderOutput, rasterize
from splat4d.train.densify import auto_grad_threshold, auto_max_gaussians
from splat4d.train.losses import background_opacity, photometric_loss
from splat4d.train.optim import ParamGroup


PE_UNITS_PER_EXTENT = 4.0
"""The fine stage's positional encoding measures positions in units of extent / this (`pe_unit`)."""

MONOCULAR_TIME_SMOOTH = 4.0
"""Correlation length (rows) of the initial time table in a monocular capture (`time_smooth`)."""

MULTIVIEW_SH_DEGREE = 1
"""`sh_degree` where several cameras see each time (3 fitted the MuJoCo capture better on one seed of three
and the synthetic scene 1.9 dB worse; see ADCGSConfig.sh_degree)."""


@dataclass
class ADCGSConfig:
    """ADC-GS: anchors with K neural primitives, coarse-to-fine deformation, rate-distortion training."""

    k: int = 10
    """Primitives per anchor."""
    feature_dim: int = 32
    """Width of the reference feature f_v."""
    residual_dim: int = 16
    """Width of each primitive's residual feature f_g."""
    time_dim: int = 256
    """Width of the time table Z (one row per frame)."""
    time_rows: int = 0
    """Rows of the time table Z (0: from the capture, as `deformable`'s HexPlane time knots: one per frame
    when several cameras see each frame, one per two frames in a monocular capture, at most 150). A row
    per frame in a monocular capture leaves the rows of the test frames untrained (D-NeRF's test times are
    not training times): on D-NeRF collision the random rows of the 45 held-out frames cost 1.1 dB (26.06 ->
    27.18 with each replaced by its trained neighbours' interpolation)."""
    time_smooth: float = -1.0
    """Correlation length of the time table's initial rows, in rows (`fields.encodings.smooth_rows`; 0:
    independent random rows; negative: from the capture, MONOCULAR_TIME_SMOOTH rows in a monocular capture,
    0 where several cameras see each frame). The rows move little in training (lr_deform), so their start
    is the time code the networks see, and a monocular capture's test times fall between training times:
    D-NeRF collision at 3000 iterations, 75 rows, seeds 0 / 1 / 2: independent rows 25.0 / - / -, 4 rows
    27.6 / 21.8 / 27.8 (seed 1 lost a ball to an early prune; see background_start_fraction)."""
    time_feature_dim: int = 32
    """Width of the time feature f_t."""
    pe_freqs: int = 4
    """Positional-encoding frequencies of the deformed anchor in the fine stage (3 x 2 x pe_freqs values, of
    the position in units of pe_unit). The fine network's opacity and colour then vary with the anchor's
    position at up to 2^(pe_freqs-1) cycles per unit. At 12 (world units, the earlier default) they varied
    faster than the anchors move between frames, so the fine stage added noise the rest of the model had to
    blur out: D-NeRF collision at 3000 iterations, seeds 0 / 2, 28.62 / 27.07 -> 29.49 / 29.94 dB at 4
    (training views of seed 0: 31.6 -> 33.1 dB); without the fine stage 29.44 (seed 0)."""
    pe_unit: float = 0.0
    """Length unit of the fine stage's positional encoding (0: from the scene, a quarter of its extent, so
    the encoding means the same on a scene of any scale; resolved in place, so config.yaml shows it). A run
    saved before this setting existed loads with world units (1.0), as it was trained."""
    hidden: int = 32
    """Width of the primitive network theta."""
    deform_hidden: int = 64
    """Width of the coarse and fine deformation networks."""
    coarse_pe_freqs: int = 4
    """Frequencies of a positional encoding of the anchor position (over the scene extent) given to the
    coarse network besides [f_v, f_t]; 0 is the paper's eq. 2 (motion from the feature alone). With it,
    nearby anchors start out moving alike, as in 4DGaussians' field: +0.6 dB on the synthetic default
    scene at 3000 iterations (24.13 vs 23.51 dB)."""
    entropy_hidden: int = 32
    """Width of the entropy model's networks (hyperprior, context models); they travel in the bitstream. 64
    (ADC-GS's code): 0.369 MB at 24.78 dB on the synthetic default scene; 32: 0.304 MB at 24.74 dB (the
    networks section 238 -> 168 KB, the coded attributes +5 KB)."""
    sh_degree: int = -1
    """View-dependent colour (not in the paper, whose colour is the same from every side): theta also gives
    each primitive SH bands 1..sh_degree (3 per band coefficient), so the weights grow by hidden x 3 x
    ((d+1)^2 - 1) numbers and the coded anchor attributes not at all; the DC term is the colour of eq. 1.
    -1: MULTIVIEW_SH_DEGREE (1) where several cameras see each time, 0 in a monocular capture (resolved in
    place), where each time is seen from one direction, so a view-dependent colour can stand in for motion.
    At 3000 iterations, held out, the .s4d: MuJoCo toss (lambda_e 1e-4) seeds 0 / 1 / 2, degree 0: 23.46 /
    23.05 / 22.74, degree 1: 24.03 / 23.67 / 23.91, degree 3: 24.51 / 23.30 / 23.60 dB (deformable 24.22 /
    23.93 / 23.26); synthetic default (lambda_e 1e-3, seed 0) degree 0 / 1 / 3: 26.75 / 26.64 / 24.87 (at
    degree 3 colours wrong from the held-out cameras). 0: the paper's model."""
    sh_start_fraction: float = 0.0
    """The SH bands join the colour at this fraction of the run (zero before it, so anchors are grown and
    pruned on a view-independent colour). D-NeRF collision, degree 3: 0.5 collapsed to 201 anchors as 0 did
    (18.14 dB both; the initial weights, not the colour, decide that collapse)."""
    fine_stage: bool = True
    """Refine each primitive's opacity and colour over time (eq. 4); False measures the stage's worth."""
    temporal_opacity: bool = True
    """Give every anchor a temporal opacity exp(-(t - mu_v)^2 / (2 sigma_v^2)) over its K primitives (not in
    the paper; as `deformable`'s per Gaussian): 2 values per anchor in the bitstream. Without it a monocular
    capture's moving object is erased by the other time steps' views (D-NeRF collision at 3000 iterations:
    18.14 dB, the ball missing). False: the paper's model."""
    t_scale_init: float = 0.25
    """Initial temporal width of the anchors from the scene's points (fraction of the clip); their centres
    start uniform in [0, 1]."""
    clone_t_scale: float = 0.05
    """Temporal width of anchors placed on foreground rays (centred at their view's time), and the least
    width of grown anchors, which are centred at the mean time of their parent primitive's weighted
    gradients and twice their spread in time wide (at most the parent's width; `refine`)."""
    foreground_init_anchors: int = 1000
    """Anchors (temporal opacity only) on rays through training pixels that differ from the background
    (`splat4d.data.foreground`; depth as `ray_depths` says), centred at their view's time: every time step
    starts with anchors where something was seen then (0: none; at most half of max_init_anchors)."""
    dynamic_init_fraction: float = 0.5
    """Fraction of the foreground anchors placed on rays through pixels that change under a fixed camera
    (`data.foreground.dynamic_rays`: each camera's frames against their per-pixel median), at their frame's
    time; the rest on rays through pixels that differ from the background. On a capture whose floor is not
    the background colour, the foreground rays fall mostly on the floor and the moving objects got almost no
    anchors: MuJoCo toss at 3000 iterations 18.90 -> 19.70 / 19.47 dB (seeds 0 / 1); synthetic default
    26.14 -> 26.17. No effect where no camera sees three frames from one pose. 0: foreground rays only."""
    ray_depths: str = "consistent"
    """Where on its ray a foreground anchor (initial or reseeded) starts: "consistent", at the best of 32
    depths by agreement with the 8 training views nearest its time (`data.ray_depths` votes: a visual hull in
    a time window), "cost", at the one of those depths with the lowest photo cost in those views
    (`data.ray_depths.photo_cost`: finds a floor of few colours that votes tie on), or "uniform", a uniform
    depth inside the scene box."""
    wide_static_anchors: bool = True
    """Foreground anchors whose colour the training views of the whole capture agree with
    (`data.ray_depths.static_points`: static content such as a floor that is not the background colour)
    start t_scale_init wide in time, not clone_t_scale: one anchor then serves every frame."""
    anchor_velocity: bool = True
    """With a temporal opacity, give every anchor a velocity v_v (3 values, fp16 in the bitstream's
    temporal section; not in the paper, as Spacetime Gaussians' polynomial motion): the anchor at t moves by
    v_v (t - mu_v) besides the coarse network's motion. Anchors narrow in time each serve a short stretch
    of the clip, and the coarse network (one small MLP for all anchors) fitted their motion within it
    poorly: on D-NeRF collision the balls rendered blurred and a few pixels behind where the training
    views show them. False: motion from the coarse network alone."""
    lr_velocity: float = 2.5e-3
    """Learning rate of the anchor velocities, times the scene extent (decays to 1/10 from the warm-up's end)."""
    lr_t_means: float = 1e-3
    """Learning rate of the anchors' temporal centres."""
    lr_t_scales: float = 5e-3
    """Learning rate of the anchors' temporal log-widths."""
    voxel_size: float = 0.0
    """Anchor voxel size in scene units (0: the smallest of extent/100 x 1.25^k giving at most max_init_anchors)."""
    max_init_anchors: int = 5000
    """Most initial anchors (CPU speed: K primitives each), foreground anchors included."""
    random_init_points: int = 20000
    """Points placed uniformly in the scene box when the scene has no initial points."""
    warmup_fraction: float = 0.1
    """Fraction of the run without deformation (static warm-up)."""
    quantise_fraction: float = 0.125
    """Quantisation of the anchor attributes starts at this fraction of the run."""
    rate_fraction: float = 0.1875
    """The rate term joins the loss at this fraction of the run."""
    lambda_e: float = 1e-3
    """Weight of the rate: mean estimated bits per coded anchor value (the R of eq. 10 divided by the number
    of coded values, so one lambda suits any anchor count)."""
    lambda_ssim: float = 0.2
    """Weight of D-SSIM in (1 - lambda) L1 + lambda (1 - SSIM)."""
    lambda_background: float = 0.05
    """Weight of the mean opacity rendered over pixels that show the scene's background colour (every
    channel within 0.1 of it; not in the paper). A primitive of the background's colour in front of the
    background costs nothing in the training views that see it there, so a black (or white) sky fills with
    floaters that cover the scene from held-out cameras, and an opacity that comes from a shared network
    keeps them above the prune threshold. Where the capture's true content has the background's colour, it
    renders the same either way. At 3000 iterations, 0 -> 0.05: MuJoCo toss held-out 17.0 -> 18.9 dB,
    D-NeRF collision 25.6 -> 26.1, synthetic default 25.9 -> 26.1. 0: off."""
    background_start_fraction: float = 0.0
    """The background-opacity term joins the loss at this fraction of the run. Through the shared opacity
    network it lowers every primitive's opacity at once: on a capture with a white background (D-NeRF, seed 1)
    all but 132 of 3,721 anchors fell below the draw threshold within 100 iterations and a refinement pruned
    3,703 (benchmarks/adcgs_diagnostics.py prune). Starting it at 0.5 avoids that but did not raise the mean
    PSNR over three seeds (docs/benchmarks.md), so it starts at once by default."""
    step_f_v: float = 0.1
    """Base quantisation step of f_v."""
    step_f_g: float = 0.1
    """Base quantisation step of f_g."""
    step_cov: float = 0.01
    """Base quantisation step of Sigma_v."""
    step_col: float = 0.01
    """Base quantisation step of C_v."""
    lr_anchors: float = 0.0
    """Learning rate of the anchor positions, times the scene extent (decays to 1/100); 0: fixed, as in HAC
    (the offsets place the primitives). 1.6e-4 (deformable's means) measured at 3000 iterations: MuJoCo toss
    18.9 -> 19.7 dB, D-NeRF collision 26.1 -> 25.4; kept at 0."""
    lr_features: float = 1.5e-2
    """Learning rate of f_v and f_g (twice HAC's 7.5e-3: a 3000-iteration run is far shorter than
    the 30k-80k that those rates were chosen for, and its MuJoCo floor was still underfitted, in the
    training views too). At 3000 iterations, with lr_mlp doubled too, seed 0 / 1: MuJoCo toss
    22.84 / 22.73 -> 23.25 / 23.03 dB; D-NeRF collision 29.70 -> 29.63; synthetic default 26.68 -> 26.75.
    Four times: toss 22.37; only lr_mlp twice: toss 22.59."""
    lr_log_cov: float = 7e-3
    """Learning rate of Sigma_v."""
    lr_colors: float = 2.5e-3
    """Learning rate of C_v."""
    lr_mlp: float = 1e-3
    """Learning rate of theta (decays to 1/100; HAC's is 4e-3). One network gives every primitive its
    opacity, and Adam moves all its output weights by about this much per step, so at 8e-3 (the default
    until 2026-12-07) it could switch off nearly every primitive in the static warm-up, before the anchor
    features had told them apart; an undrawn primitive gets no gradient and the first refinement prunes
    its anchor (D-NeRF collision seed 1: 201 anchors, 18.14 dB). At 1e-3, 3000 iterations, lambda_e 1e-4,
    .s4d evaluated: D-NeRF collision seeds 0 / 1 29.45 / 18.14 -> 29.66 / 29.61 dB; MuJoCo toss
    24.03 -> 24.38 (see docs/benchmarks.md, fifteenth session)."""
    lr_deform: float = 4e-4
    """Learning rate of the time table and the deformation networks (decays to 1/10 from the warm-up's end).
    Adam moves every weight of the shared output layer by about this much per step, so all anchors move
    together by ~lr x (sum of hidden activations): at 1.6e-3 and above, with a time feature strong enough
    to matter, the motion ran to its bound and the run collapsed (~11 dB); 1.6e-4 learnt too slowly
    (22.5 dB); 4e-4: 24.8 dB on the synthetic default scene at 3000 iterations."""
    lr_entropy: float = 5e-3
    """Learning rate of the entropy model."""
    refine_every: int = 100
    """Grow and prune anchors every this many iterations."""
    refine_start_fraction: float = 0.05
    """First refinement at this fraction of the run."""
    refine_stop_fraction: float = 0.5
    """No refinement from this fraction of the run on."""
    grow_threshold: float = 0.0
    """Temporal-significance-weighted mean 2D gradient (eq. 11, NDC units) above which a primitive's place
    becomes a new anchor (0: from the capture, as `densify.auto_grad_threshold`)."""
    grow_levels: int = 3
    """Voxel resolutions of anchor growth (Scaffold-GS's multi-resolution growth): level m grows anchors in
    voxels of voxel / 4^m where a primitive's significance passes grow_threshold x 2^m, their offsets and
    sizes scaled by 4^-m (1: the initial voxel only; a primitive within its own anchor's voxel then never
    grows one). D-NeRF collision at 3000 iterations: 1 level 23.8 dB, 3 levels 25.6 dB (the balls are
    smaller than the initial voxel); synthetic default 25.83 vs 25.87."""
    grow_in_bounds: bool = True
    """Grow anchors only from primitives inside the scene box (not in the paper). Where a capture's floor
    reaches past the box, anchors grown out there that serve much of the clip hung over the floor's far
    edge in held-out views (MuJoCo toss, seed 0, with grown anchors as wide as their gradients' spread in
    time: sky 17.7 dB and 19.69 overall; inside the box only: 22.84, against 21.85 with narrow grown
    anchors; D-NeRF collision 29.51 -> 29.70). The initial, ray and reseeded anchors may still lie outside."""
    reseed_anchors: int = 200
    """At each refinement, at most this many new anchors on rays through training pixels (of the views since
    the last refinement) that differ from the background but render almost transparent, at their view's
    time and at the depth the nearby views agree with (`reseed`; not in the paper): growth adds anchors
    only next to drawn primitives, so a stretch of time whose anchors were all pruned stayed empty (0: off)."""
    prune_opacity: float = 0.05
    """Anchors whose primitives never reached this opacity (as drawn, in any view since the last refinement)
    are pruned. The primitives' opacities come from one shared network, which holds useless ones near
    0.03-0.04 rather than at 0 (a per-Gaussian opacity falls much further): at 3DGS's 0.005 (or HAC's
    0.003) the D-NeRF capture's random initial cloud (3,721 anchors, 5x the growth cap) was never pruned,
    so nothing could grow (22.5 dB); at 0.05 it fell to ~1,000 anchors and growth placed the rest on the
    balls (23.8 dB). Synthetic default: 25.8 vs 26.1 dB (within the seed spread)."""
    max_anchors: int = 0
    """Never grow beyond this many anchors (0: from the scene, as densification's `auto_max_gaussians`: 4
    primitives per foreground pixel of a view, divided by K, and never below the initial anchors;
    unbounded growth reached 16k anchors = 160k primitives by iteration 900 on the synthetic default scene)."""
    backend: str = "auto"
    """Rasterizer backend: auto, cpu, torch or cuda."""

    def validate(self, prefix: str = "method") -> None:
        """Raise ConfigError naming the first setting out of range (see splat4d.config_checks)."""
        for name in ("k", "feature_dim", "residual_dim", "time_dim", "time_feature_dim", "hidden", "deform_hidden",
                     "entropy_hidden", "max_init_anchors", "random_init_points", "refine_every"):
            check_int(f"{prefix}.{name}", getattr(self, name), 1)
        check_int(f"{prefix}.foreground_init_anchors", self.foreground_init_anchors, 0)
        check_int(f"{prefix}.sh_degree", self.sh_degree, -1, 3)
        check_int(f"{prefix}.time_rows", self.time_rows, 0)
        check_float(f"{prefix}.time_smooth", self.time_smooth)
        check_float(f"{prefix}.dynamic_init_fraction", self.dynamic_init_fraction, 0, 1)
        check_int(f"{prefix}.grow_levels", self.grow_levels, 1, 8)
        check_bool(f"{prefix}.temporal_opacity", self.temporal_opacity)
        check_bool(f"{prefix}.anchor_velocity", self.anchor_velocity)
        check_bool(f"{prefix}.wide_static_anchors", self.wide_static_anchors)
        check_bool(f"{prefix}.grow_in_bounds", self.grow_in_bounds)
        for name in ("t_scale_init", "clone_t_scale"):
            check_float(f"{prefix}.{name}", getattr(self, name), 0, lo_open=True)
        check_int(f"{prefix}.max_anchors", self.max_anchors, 0)
        check_int(f"{prefix}.reseed_anchors", self.reseed_anchors, 0)
        check_int(f"{prefix}.pe_freqs", self.pe_freqs, 0, 16)
        check_float(f"{prefix}.pe_unit", self.pe_unit, 0)
        check_int(f"{prefix}.coarse_pe_freqs", self.coarse_pe_freqs, 0, 16)
        check_bool(f"{prefix}.fine_stage", self.fine_stage)
        for name in ("voxel_size", "lambda_e", "grow_threshold", "lr_anchors"):
            check_float(f"{prefix}.{name}", getattr(self, name), 0)
        for name in ("warmup_fraction", "quantise_fraction", "rate_fraction", "refine_start_fraction",
                     "refine_stop_fraction"):
            check_float(f"{prefix}.{name}", getattr(self, name), 0, 1)
        check_float(f"{prefix}.lambda_ssim", self.lambda_ssim, 0, 1)
        check_float(f"{prefix}.lambda_background", self.lambda_background, 0)
        check_float(f"{prefix}.background_start_fraction", self.background_start_fraction, 0, 1)
        check_float(f"{prefix}.sh_start_fraction", self.sh_start_fraction, 0, 1)
        check_float(f"{prefix}.prune_opacity", self.prune_opacity, 0, 1, hi_open=True)
        for name in ("step_f_v", "step_f_g", "step_cov", "step_col"):
            check_float(f"{prefix}.{name}", getattr(self, name), 0, lo_open=True)
        check_positive_lrs(self, prefix, ("lr_features", "lr_log_cov", "lr_colors", "lr_mlp", "lr_deform", "lr_entropy",
                                          "lr_t_means", "lr_t_scales", "lr_velocity"))
        check_choice(f"{prefix}.backend", self.backend, BACKENDS)
        check_choice(f"{prefix}.ray_depths", self.ray_depths, ("consistent", "cost", "uniform"))

    def anchor_dims(self, time_rows: int) -> AnchorDims:
        return AnchorDims(self.k, self.feature_dim, self.residual_dim, time_rows, self.time_dim, self.time_feature_dim,
                          self.pe_freqs, self.hidden, self.deform_hidden, self.coarse_pe_freqs, max(self.time_smooth, 0.0),
                          self.pe_unit if self.pe_unit > 0 else 1.0,  # 0 when loading: saved before it existed
                          max(self.sh_degree, 0))

    def entropy_dims(self) -> EntropyDims:
        return EntropyDims(f_v=self.feature_dim, f_g=self.k * self.residual_dim,
                           chunks=4 if self.k * self.residual_dim % 4 == 0 else 1, hidden=self.entropy_hidden)

    def entropy_steps(self) -> dict[str, float]:
        return {"f_v": self.step_f_v, "f_g": self.step_f_g, "cov": self.step_cov, "col": self.step_col}


@register
class ADCGS(Method):
    name = "adcgs"
    Config = ADCGSConfig

    def __init__(self, cfg: ADCGSConfig, field: AnchorField, extent: float, voxel: float, grow_threshold: float):
        super().__init__(cfg)
        self.field = field
        self.entropy = EntropyModel(cfg.entropy_dims(), cfg.entropy_steps())
        device = field.anchors.device
        for name, value in (("extent", float(extent)), ("voxel", float(voxel)), ("grow_threshold", float(grow_threshold))):
            self.register_buffer(name, torch.tensor(value, device=device))
        for name in ("warmup_iters", "quantise_iters", "rate_iters", "step"):
            self.register_buffer(name, torch.tensor(0, device=device))
        # True once the anchor attributes hold decoded (already quantised) values: rendered as they are
        self.register_buffer("decoded", torch.tensor(False, device=device))
        self.refiner = AnchorRefiner(cfg)
        self._background_start = 0  # set from the run's length by param_groups
        self._sh_start = 0  # likewise
        self._eval_attrs: dict[str, Tensor] | None = None
        self._eval_drawn: dict[str, Tensor] | None = None
        self._scene = None

    # ------------------------------------------------------------ building
    @classmethod
    def from_scene(cls, scene, cfg: ADCGSConfig, generator: torch.Generator | None = None) -> "ADCGS":
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        bounds = scene.bounds.float()
        extent = float((bounds[1] - bounds[0]).norm()) / 2
        if scene.points is not None and len(scene.points) > 0:
            pts = scene.points.float()
            cols = scene.point_colors.float() if scene.point_colors is not None else None
        else:
            pts = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(cfg.random_init_points, 3, generator=gen, device="cpu")
            cols = None
        # foreground anchors (temporal opacity only) take up to half of max_init_anchors, the cloud the rest
        on_rays = min(cfg.foreground_init_anchors, cfg.max_init_anchors // 2) if cfg.temporal_opacity else 0
        from_cloud = cfg.max_init_anchors - on_rays
        voxel = cfg.voxel_size or auto_voxel(pts, extent, from_cloud)
        views_per_time = scene.views_per_time("train")
        if cfg.time_rows <= 0:  # resolved in place, so the run's config.yaml shows it
            cfg.time_rows = auto_time_resolution(scene.num_frames, views_per_time)
        if cfg.time_smooth < 0:
            cfg.time_smooth = MONOCULAR_TIME_SMOOTH if views_per_time < 2 else 0.0
        if cfg.sh_degree < 0:  # resolved in place, so the run's config.yaml shows it
            cfg.sh_degree = MULTIVIEW_SH_DEGREE if views_per_time >= 2 else 0
        if cfg.pe_unit <= 0:  # resolved in place, so the run's config.yaml shows it
            cfg.pe_unit = float(np.float32(extent / PE_UNITS_PER_EXTENT))
        dims = cfg.anchor_dims(cfg.time_rows)
        field = AnchorField.init_from_points(pts, cols, voxel, dims, gen, cfg.fine_stage, extent)
        if len(field) > from_cloud:  # a set voxel_size may give more: keep a random subset
            field = field.subset(torch.randperm(len(field), generator=gen, device="cpu")[:from_cloud])
        rays = None
        if cfg.temporal_opacity:
            rays = foreground_rays(scene)
            moving = dynamic_rays(scene) if cfg.dynamic_init_fraction > 0 else None
            field = with_temporal_opacity(field, rays, bounds, cfg, on_rays, voxel, gen, moving, scene)
        threshold = cfg.grow_threshold or auto_grad_threshold(views_per_time)
        if cfg.max_anchors <= 0:  # resolved in place, so the run's config.yaml shows it
            rays = rays if rays is not None else foreground_rays(scene)
            cfg.max_anchors = max(auto_max_gaussians(rays.pixels_per_view, 0) // cfg.k, len(field))
        method = cls(cfg, field, extent, voxel, threshold)
        method._scene = scene  # the training views that reseeding looks at (not saved)
        return method

    @classmethod
    def empty_with(cls, cfg: ADCGSConfig, anchors: int, time_rows: int, extent: float, voxel: float,
                   grow_threshold: float) -> "ADCGS":
        """A model of `anchors` anchors with zero attributes (to receive decoded values)."""
        dims = cfg.anchor_dims(time_rows)
        z = lambda *shape: torch.zeros(*shape, device="cpu")  # noqa: E731 (moved to the device by the caller)
        field = AnchorField(z(anchors, 3), z(anchors, 6), z(anchors, 3), z(anchors, dims.f_v), z(anchors, dims.k, dims.f_g),
                            dims, cfg.fine_stage, extent, _zero_temporal(cfg, anchors))
        return cls(cfg, field, extent, voxel, grow_threshold)

    @torch.no_grad()
    def set_decoded_attributes(self, coded: dict[str, Tensor]) -> None:
        """Set the anchor attributes to decoded values (entropy model names: f_v, f_g, cov, col) and render
        them as they are from now on."""
        f = self.field
        f.f_v.copy_(coded["f_v"])
        f.f_g.copy_(coded["f_g"].reshape(f.f_g.shape))
        f.log_cov.copy_(coded["cov"])
        f.colors.copy_(coded["col"])
        self.decoded.fill_(True)
        self._eval_attrs = self._eval_drawn = None

    @classmethod
    def empty(cls, cfg: ADCGSConfig, state: dict) -> "ADCGS":
        shapes = {k: state[f"field.{k}"] for k in AnchorField.FIELDS}
        # widths that a run saved before these settings existed (or had other defaults) shows in its tensors
        if "entropy.analysis.net.0.weight" in state:
            cfg.entropy_hidden = int(state["entropy.analysis.net.0.weight"].shape[0])
        if "field.coarse.inp.weight" in state:
            extra = int(state["field.coarse.inp.weight"].shape[1]) - cfg.feature_dim - cfg.time_feature_dim
            cfg.coarse_pe_freqs = max(extra, 0) // 6
        if "field.theta.out.weight" in state:  # 14 outputs, then 3 per SH coefficient beyond the DC term
            rest = (int(state["field.theta.out.weight"].shape[0]) - 14) // 3
            cfg.sh_degree = int(round(math.sqrt(rest + 1))) - 1
        cfg.temporal_opacity = "field.t_means" in state  # runs saved before it existed have none
        cfg.anchor_velocity = "field.t_velocity" in state
        dims = cfg.anchor_dims(int(state["field.time_table.table"].shape[0]))
        extent = float(state["extent"])
        field = AnchorField(*(torch.zeros_like(shapes[k]) for k in AnchorField.FIELDS), dims, cfg.fine_stage, extent,
                            _zero_temporal(cfg, len(shapes["anchors"])))
        return cls(cfg, field, extent, float(state["voxel"]), float(state["grow_threshold"]))

    # ------------------------------------------------------------ training
    def param_groups(self, total_steps: int) -> list[ParamGroup]:
        c, f, e = self.cfg, self.field, float(self.extent)
        for buf, frac in ((self.warmup_iters, c.warmup_fraction), (self.quantise_iters, c.quantise_fraction),
                          (self.rate_iters, c.rate_fraction)):
            buf.fill_(round(frac * total_steps))
        self.refiner.schedule(total_steps)
        self._background_start = round(c.background_start_fraction * total_steps)
        self._sh_start = round(c.sh_start_fraction * total_steps)
        start = int(self.warmup_iters)
        deform = list(f.time_table.parameters()) + list(f.time_net.parameters()) + list(f.coarse.parameters()) + \
            list(f.fine_net.parameters())
        temporal = [ParamGroup("t_means", [f.t_means], c.lr_t_means, per_gaussian=True),
                    ParamGroup("t_log_scales", [f.t_log_scales], c.lr_t_scales, per_gaussian=True)] if f.temporal else []
        if f.velocity:
            temporal.append(ParamGroup("t_velocity", [f.t_velocity], c.lr_velocity * e, c.lr_velocity * e / 10,
                                       max(total_steps - start, 1), per_gaussian=True, start=start))
        return temporal + [
            ParamGroup("anchors", [f.anchors], c.lr_anchors * e, c.lr_anchors * e / 100 if c.lr_anchors > 0 else None,
                       total_steps, per_gaussian=True),
            ParamGroup("log_cov", [f.log_cov], c.lr_log_cov, per_gaussian=True),
            ParamGroup("colors", [f.colors], c.lr_colors, per_gaussian=True),
            ParamGroup("f_v", [f.f_v], c.lr_features, per_gaussian=True),
            ParamGroup("f_g", [f.f_g], c.lr_features, per_gaussian=True),
            ParamGroup("theta", list(f.theta.parameters()), c.lr_mlp, c.lr_mlp / 100, total_steps),
            ParamGroup("deform", deform, c.lr_deform, c.lr_deform / 10, max(total_steps - start, 1), start=start),
            ParamGroup("entropy", list(self.entropy.parameters()), c.lr_entropy, c.lr_entropy / 10, total_steps),
        ]

    def on_step(self, step: int) -> None:
        self.step.fill_(step)

    @property
    def dynamic(self) -> bool:
        return int(self.step) >= int(self.warmup_iters)

    @property
    def view_dependent(self) -> bool:
        """Whether the SH bands colour the primitives now (sh_degree > 0, from sh_start_fraction of the run;
        always outside training runs)."""
        return self.cfg.sh_degree > 0 and int(self.step) >= self._sh_start

    @property
    def quantising(self) -> bool:
        return int(self.step) >= int(self.quantise_iters)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        self._eval_attrs = self._eval_drawn = None
        return super().load_state_dict(state, strict=strict, assign=assign)

    def train(self, mode: bool = True) -> "ADCGS":
        self._eval_attrs = self._eval_drawn = None  # recomputed after any training
        return super().train(mode)

    def coded_attributes(self) -> dict[str, Tensor]:
        """Anchor attributes as the entropy model names them: f_v [A, Dv], f_g [A, K*Dg], cov [A, 6], col [A, 3]."""
        f = self.field
        return {"f_v": f.f_v, "f_g": f.f_g.reshape(len(f), -1), "cov": f.log_cov, "col": f.colors}

    def quantised(self, mode: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(attributes to render with, as AnchorField names them; estimated bits per anchor) under `mode`."""
        a = self.coded_attributes()
        out, bits = self.entropy(a["f_v"], a["f_g"], a["cov"], a["col"], mode=mode)
        f = self.field
        attrs = {"f_v": out["f_v"], "f_g": out["f_g"].reshape(f.f_g.shape), "log_cov": out["cov"], "colors": out["col"]}
        return attrs, bits

    def loss(self, batch: Batch, outs: list[RenderOutput], step: int) -> tuple[Tensor, dict]:
        pred = torch.cat([o.rgb for o in outs])
        loss, logs = photometric_loss(pred, batch.images, self.cfg.lambda_ssim, fused=True)
        if self._scene is not None:
            self.refiner.note_missed(batch, torch.cat([o.alpha for o in outs])[..., 0], step)
        if self.cfg.lambda_background > 0 and step >= self._background_start:
            bg_alpha = background_opacity(torch.cat([o.alpha for o in outs])[..., 0], batch.images, batch.background)
            loss = loss + self.cfg.lambda_background * bg_alpha
            logs["background_alpha"] = float(bg_alpha.detach())
        if step >= int(self.rate_iters) and self._train_bits is not None:
            seen = self._anchors_in_view(outs)
            if bool(seen.any()):
                per_anchor = sum(v.shape[-1] for v in self.coded_attributes().values())
                bits = sum(b[seen].sum() for b in self._train_bits.values())
                rate = bits / (int(seen.sum()) * per_anchor)
                loss = loss + self.cfg.lambda_e * rate
                logs["bits_per_value"] = float(rate.detach())
        return loss, logs

    def _anchors_in_view(self, outs: list[RenderOutput]) -> Tensor:
        """[A] bool: anchors with a primitive inside some rendered view. The rate is taken over these only
        (as HAC does): over all anchors its gradient reaches every anchor at every step while the image's
        reaches only those in view, and Adam, which scales each by its own history, then pulls unseen
        anchors' features to the entropy model's means (measured: PSNR fell from 22 to 15 dB after the
        rate term started on the synthetic default scene)."""
        seen = torch.zeros(len(self.field), dtype=torch.bool, device=self.field.anchors.device)
        for o in outs:
            slots = o.meta["slot"][o.meta["visible"].any(0).to(o.meta["slot"].device)]
            seen[slots // self.cfg.k] = True
        return seen

    def after_backward(self, outs: list[RenderOutput], step: int) -> None:
        self.refiner.accumulate(outs, len(self.field) * self.cfg.k, step)

    def after_step(self, opt: torch.optim.Optimizer, step: int) -> dict:
        logs = self.refiner.refine(self, opt, step)
        return logs

    def extra_state(self) -> dict:
        return {"refine": self.refiner.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if "refine" in state:
            self.refiner.load_state_dict(state["refine"])

    @property
    def num_primitives(self) -> int:
        return len(self.field) * self.cfg.k

    # ------------------------------------------------------------ rendering
    _train_bits: dict[str, Tensor] | None = None

    def attributes_for_render(self) -> dict[str, Tensor] | None:
        """None before quantisation starts; noisy attributes while training (their bits kept for the rate
        term); rounded ones at evaluation, computed once until training resumes."""
        if not self.quantising or bool(self.decoded):
            self._train_bits = None
            return None
        if self.training:
            attrs, self._train_bits = self.quantised("noise")
            return attrs
        if self._eval_attrs is None:
            with torch.no_grad():
                self._eval_attrs = self.quantised("round")[0]
        return self._eval_attrs

    def primitives_at(self, t: float) -> dict[str, Tensor]:
        """The primitives drawn at t. In evaluation without gradients the canonical primitives (eq. 1, the
        same at every t) are computed once, so a frame costs only the anchors' deformation."""
        attrs = self.attributes_for_render()
        if self.training or torch.is_grad_enabled():
            p = self.field.primitives(t, self.dynamic, attrs)
        else:
            if self._eval_drawn is None:
                self._eval_drawn = self.field.drawn(attrs)
            p = self.field.primitives(t, self.dynamic, attrs, self._eval_drawn)
        if not self.view_dependent:
            p.pop("sh_rest", None)
        return p

    def render(self, cameras: Cameras, t: float, background: Tensor | None = None, **kw) -> RenderOutput:
        p = self.primitives_at(t)
        if self.training:
            kw.setdefault("return_weights", True)  # the temporal significance of eq. 11
        colors, degree = render_colors(p)
        out = rasterize(p["means"], p["quats"], p["scales"], p["opacities"], colors, cameras,
                        background=background, sh_degree=degree, backend=self.cfg.backend, **kw)
        out.meta["slot"] = p["slot"]
        out.meta["opacities"] = p["opacities"].detach()
        out.meta["time"] = float(t)  # grown anchors are centred at the time their parent was needed
        if self.field.temporal:  # a primitive too faint at this time to draw a pixel is not seen in this view
            out.meta["visible"] = out.meta["visible"] & (p["opacities"] >= 1.0 / 255.0).to(out.meta["visible"].device)
        out.meta["canonical_means"] = p["canonical_means"]
        return out

    def gaussians_at(self, t: float) -> dict[str, Tensor]:
        """Activated Gaussians at time t (for export): SH [N, (sh_degree + 1)^2, 3], the DC term from the colours."""
        p = self.primitives_at(t)
        return {"means": p["means"], "quats": p["quats"], "scales": p["scales"], "opacities": p["opacities"],
                "sh": sh_coefficients(p)}


_CHOOSE = {"consistent": "votes", "cost": "cost"}
"""`data.ray_depths.consistent_points_on_rays`'s choose for each ADCGSConfig.ray_depths but "uniform"."""


def with_temporal_opacity(field: AnchorField, rays, bounds: Tensor, cfg: ADCGSConfig, on_rays: int, voxel: float,
                          gen: torch.Generator, moving=None, scene=None) -> AnchorField:
    """`field` with a temporal opacity (centres uniform in [0, 1], width t_scale_init) plus `on_rays`
    anchors on foreground rays at their view's time (width clone_t_scale; a dynamic_init_fraction of them on
    the `moving` rays, when given), each at its own point (not merged by voxel: anchors of different times may
    share one; its depth as cfg.ray_depths says, "consistent" needing the `scene`), the ray's colour, sizes
    from the voxel (as `init_from_points`), random features."""
    from splat4d.data.foreground import points_on_rays
    from splat4d.data.ray_depths import consistent_points_on_rays

    def on(r, n):
        if cfg.ray_depths != "uniform" and scene is not None:
            return consistent_points_on_rays(r, scene, bounds, n, gen, choose=_CHOOSE[cfg.ray_depths])
        return points_on_rays(r, bounds, n, gen)

    n_moving = int(round(on_rays * cfg.dynamic_init_fraction)) if moving is not None else 0
    parts = [on(rays, on_rays - n_moving)]
    if n_moving:
        parts.append(on(moving, n_moving))
    pts, cols, times = (torch.cat(x) for x in zip(*parts))
    n, d = len(pts), field.dims
    A = len(field)
    grow = lambda p, extra: torch.cat([p.detach(), extra.to(p)])  # noqa: E731
    log_cov = torch.full((n, 6), math.log(voxel), device="cpu")
    new = {"anchors": pts, "log_cov": log_cov, "colors": cols,
           "f_v": torch.randn(n, d.f_v, generator=gen, device="cpu") * 0.01,
           "f_g": torch.randn(n, d.k, d.f_g, generator=gen, device="cpu") * 0.01}
    t_means = torch.cat([torch.rand(A, generator=gen, device="cpu"), times])
    t_log_rays = torch.full((n,), math.log(cfg.clone_t_scale), device="cpu")
    if cfg.wide_static_anchors and scene is not None and n:
        from splat4d.data.ray_depths import static_points

        t_log_rays[static_points(pts, cols, scene)] = math.log(cfg.t_scale_init)
    t_log = torch.cat([torch.full((A,), math.log(cfg.t_scale_init), device="cpu"), t_log_rays])
    temporal = (t_means.to(field.anchors), t_log.to(field.anchors))
    if cfg.anchor_velocity:
        temporal += (torch.zeros(A + n, 3, device=field.anchors.device),)
    out = AnchorField(*(grow(getattr(field, k), new[k]) for k in AnchorField.FIELDS), d, field.fine,
                      field.motion_bound, temporal)
    out.load_state_dict({k: v for k, v in field.state_dict().items() if k.split(".")[0] not in field.fields},
                        strict=False)
    return out


def _zero_temporal(cfg: ADCGSConfig, anchors: int) -> tuple[Tensor, ...] | None:
    """Zero temporal tensors of a model to load into (centres, log-widths and, with velocities, velocities)."""
    if not cfg.temporal_opacity:
        return None
    z = lambda *shape: torch.zeros(*shape, device="cpu")  # noqa: E731
    return (z(anchors), z(anchors), z(anchors, 3)) if cfg.anchor_velocity else (z(anchors), z(anchors))


def auto_voxel(points: Tensor, extent: float, max_anchors: int) -> float:
    """The smallest voxel of extent/100 x 1.25^k whose occupied voxels number at most `max_anchors`."""
    voxel = max(extent / 100.0, 1e-6)
    pts = points.float()
    for _ in range(200):
        if torch.unique(torch.floor(pts / voxel).long(), dim=0).shape[0] <= max_anchors:
            return voxel
        voxel *= 1.25
    return voxel
