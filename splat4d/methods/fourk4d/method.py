"""`fourk4d`: 4K4D (space-carved point sequences, 4D feature grid, hybrid IBR + SH appearance,
differentiable depth peeling) as a method.

Per frame f of a synchronized capture a point set P_f [N, 3] starts inside the frame's visual hull (`carve`),
on the surfaces the frame's cameras agree on by colour (`surface`), and is trained. A HexPlane over (x, y, z,
t) gives each point a feature; small networks turn it into a displacement (bounded by `max_displacement`
voxels), a radius in [radius_min, radius_max] voxels and a density, and degree-3 SH coefficients of a colour
residual. The colour is the image-based blend of the frame's nearest source views (`ibr`) plus that residual.
A view at time t draws the frame nearest t with `render.points` (K nearest points per pixel, front to back).
Loss: (1 - l) L1 + l D-SSIM, the accumulated alpha against the foreground (`lambda_mask`), and the squared
displacement in voxels (`lambda_displacement`).

Carved from masks (the subject only), a capture that also shows a floor or a set gets a static point set
for it (`background`), drawn with every frame's points, never displaced, coloured and sized like them. Where
most of the set lies on one plane (a floor), its points near or below it are moved onto it and drawn as
discs across it (an extension of 4K4D's round points: `render.points`).

The training images of every frame are part of the model (uint8, in the checkpoint): IBR needs them at
render time, as 4K4D's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.config_checks import check_bool, check_choice, check_float, check_int, check_ints, check_positive_lrs
from splat4d.data.foreground import FOREGROUND_THRESHOLD
from splat4d.errors import DatasetError
from splat4d.fields.hexplane import HexPlane
from splat4d.fields.mlp import MLP
from splat4d.fields.sh import num_sh_bases
from splat4d.methods.base import Batch, Method, register
from splat4d.methods.fourk4d import ibr
from splat4d.methods.fourk4d.carve import CarveConfig, carve_frame, frame_masks, frame_points, frames_of
from splat4d.methods.fourk4d.surface import point_spacing
from splat4d.render import RenderOutput
from splat4d.render.points import render_points
from splat4d.train.losses import photometric_loss
from splat4d.train.optim import ParamGroup


BACKGROUND_NEIGHBOUR = 3
"""A background point's radius is 0.5-2 x the distance to its BACKGROUND_NEIGHBOUR-th nearest neighbour (a
far floor seen at a grazing angle gets few, far-apart points; the carving voxel would leave holes there)."""


@dataclass
class FourK4DConfig:
    """4K4D: carved point sequences, 4D feature grid, hybrid IBR + SH appearance, depth peeling."""

    carve: CarveConfig = field(default_factory=lambda: CarveConfig(points=20000))
    """Visual hull of each frame and the points placed in it (`points` per frame). Synthetic default scene,
    points on rays: 10k 25.49 dB, 20k 25.67 (docs/benchmarks.md)."""
    hull_from: str = "auto"
    """Foreground that is carved: "background" (pixels that differ from the scene's background colour: a
    static floor or set is carved too), "masks" (the capture's masks: the masked subject only, as 4K4D does
    on captures with a cluttered background) or "auto" (masks when every training view has one)."""
    background_points: int = 20000
    """With hull_from masks: static points for what the images show besides the subject (a floor, a set),
    shared by every frame, not displaced (`background`; 0: none). The alpha is then trained towards "differs
    from the background colour" rather than the masks. Without them a floor that reaches past the scene box
    is either missing (masks) or carved into a slab under it ("background": MuJoCo toss held-out 9.4 dB)."""
    k: int = 15
    """Points composited per pixel in training."""
    k_render: int = 15
    """Points composited per pixel at evaluation, as in training (4K4D: 11, its points end nearly opaque;
    here many end half transparent, so 11 leaves holes). MuJoCo toss, held out, 11 -> 15: 19.61 -> 19.86 and
    19.92 -> 20.27 dB on two fits, training views 26.73 -> 30.27; synthetic default scene 26.09 either way."""
    source_views: int = 8
    """Source views blended per rendered view (4K4D: 4, on rigs of 60 cameras). With 11 or 12 cameras more
    of them see a point from near the rendered direction: synthetic default scene 25.67 dB with 4, 26.11
    trained with 8; evaluated only, 2 / 3 / 6 / 8 / 10 views: 24.38 / 25.16 / 25.88 / 25.92 / 25.91."""
    radius_min: float = 0.1
    """Smallest point radius, in carving voxels."""
    radius_max: float = 3.0
    """Largest point radius, in carving voxels (4K4D: 15 mm over 5 mm voxels). At 2 the synthetic default
    scene's ground showed holes between its 10k points after 3000 iterations (held-out 22.4 dB)."""
    max_displacement: float = 1.0
    """Largest learnt displacement of a point, in carving voxels."""
    grid_resolution: tuple[int, int, int] = (32, 32, 32)
    """Spatial resolution of the HexPlane's base scale (time: one knot per frame)."""
    grid_dim: int = 16
    """Channels per plane."""
    multires: tuple[int, ...] = (1, 2)
    """Spatial scales of the HexPlane."""
    hidden: int = 64
    """Width of the geometry, displacement, SH and blend networks."""
    sh_degree: int = 3
    """Degree of the SH colour residual."""
    lambda_ssim: float = 0.2
    """Weight of D-SSIM in the photometric loss."""
    lambda_mask: float = 0.01
    """Weight of the squared difference between rendered alpha and the foreground."""
    lambda_displacement: float = 1e-3
    """Weight of the mean squared displacement (in voxels)."""
    lr_positions: float = 0.05
    """Learning rate of the point positions, in carving voxels (decays to 1/100)."""
    lr_grid: float = 5e-3
    """Learning rate of the HexPlane (4K4D: 5e-3; decays to 1/10)."""
    lr_mlp: float = 1e-3
    """Learning rate of the networks (decays to 1/10)."""
    background_discs: bool = True
    """Background points are discs across the plane of their 32 nearest (`background.plane_normals`; round
    where those are not flat) rather than round points: a floor seen at a grazing angle is covered without
    blurring it. MuJoCo toss (3000 iterations, seed 0, held out; object / floor / sky): round 20.56 dB
    (17.26 / 19.91 / 24.80), discs 20.75 (17.48 / 20.97 / 20.99)."""
    background_plane: bool = True
    """Find the background set's dominant plane (a floor: `background.dominant_plane`, none when under 30 % of
    the points lie on one); its points near or below it are moved onto it and drawn as discs across it.
    MuJoCo toss as above: 25.06 dB (17.04 / 25.04 / 34.99), where deformable has 24.24; the voted depths left
    the floor points a median 0.015 and a 90th percentile 0.28 off the floor (scene box 2.3 wide)."""
    lr_background: float = 0.0
    """Learning rate of the background set's own attributes (decays to 1/10; 0: none, the default): per
    point, offsets of the radius and density logits and of the SH residual, added to what the networks give
    (zero at the start). The HexPlane covers the scene box, so a floor reaching past it has most of its
    points reading the box's border features. Measured on MuJoCo toss at 5e-3 (3000 iterations, seed 0):
    19.61 dB held out against the defaults' 20.26 (an earlier fit); floor 18.81 vs 19.55, objects 16.04 vs
    16.57, sky 25.95 vs 25.71 (docs/benchmarks.md)."""

    def validate(self, prefix: str = "method") -> None:
        self.carve.validate(f"{prefix}.carve")
        check_choice(f"{prefix}.hull_from", self.hull_from, ("auto", "background", "masks"))
        check_int(f"{prefix}.background_points", self.background_points, 0)
        for name in ("k", "k_render", "source_views", "grid_dim", "hidden"):
            check_int(f"{prefix}.{name}", getattr(self, name), 1)
        check_int(f"{prefix}.sh_degree", self.sh_degree, 0, 3)
        check_ints(f"{prefix}.grid_resolution", self.grid_resolution, 1, length=3)
        check_ints(f"{prefix}.multires", self.multires, 1)
        check_float(f"{prefix}.radius_min", self.radius_min, 0, lo_open=True)
        check_float(f"{prefix}.radius_max", self.radius_max, self.radius_min, lo_open=True)
        for name in ("max_displacement", "lambda_mask", "lambda_displacement"):
            check_float(f"{prefix}.{name}", getattr(self, name), 0)
        check_float(f"{prefix}.lambda_ssim", self.lambda_ssim, 0, 1)
        check_positive_lrs(self, prefix, ("lr_positions", "lr_grid", "lr_mlp"))
        check_float(f"{prefix}.lr_background", self.lr_background, 0)
        check_bool(f"{prefix}.background_discs", self.background_discs)
        check_bool(f"{prefix}.background_plane", self.background_plane)


@register
class FourK4D(Method):
    name = "fourk4d"
    Config = FourK4DConfig

    def __init__(self, cfg: FourK4DConfig, positions: Tensor, frame_times: Tensor, images: Tensor, src_viewmats: Tensor,
                 src_Ks: Tensor, bounds: Tensor, voxel: float, background: Tensor | None = None,
                 background_normals: Tensor | None = None):
        super().__init__(cfg)
        F_, N, _ = positions.shape
        self.positions = torch.nn.Parameter(positions.float())  # [F, N, 3]
        bg = background if background is not None else positions.new_zeros(0, 3)
        self.background = torch.nn.Parameter(bg.float().to(positions.device))  # [M, 3], every frame's
        # [M] each background point's distance to its BACKGROUND_NEIGHBOUR-th nearest: its radius scale
        self.register_buffer("background_spacing", point_spacing(self.background.detach(), BACKGROUND_NEIGHBOUR))
        # [M, 3] each background point's disc normal (a zero row: a round point)
        nrm = background_normals if background_normals is not None else torch.zeros_like(bg)
        self.register_buffer("background_normals", nrm.float().to(positions.device))
        # [M, 2 + 3 B] each background point's offsets of the radius and density logits and the SH residual
        self.background_attrs = torch.nn.Parameter(bg.new_zeros(len(bg), 2 + 3 * num_sh_bases(cfg.sh_degree)).float())
        self.register_buffer("frame_times", frame_times.float())  # [F]
        self.register_buffer("images", images)  # [F, V, H, W, 3] uint8
        self.register_buffer("src_viewmats", src_viewmats.float())  # [V, 4, 4]
        self.register_buffer("src_Ks", src_Ks.float())  # [V, 3, 3]
        self.register_buffer("voxel", torch.tensor(float(voxel), device=positions.device))
        self.grid = HexPlane(bounds, (*cfg.grid_resolution, max(F_, 2)), cfg.grid_dim, cfg.multires)
        d, h = self.grid.feat_dim, cfg.hidden
        self.geometry = MLP(d, h, 2, 1)  # radius, density logits
        self.displacement = MLP(d, h, 3, 1, out_init_zero=True)
        self.sh = MLP(d, h, num_sh_bases(cfg.sh_degree) * 3, 1, out_init_zero=True)
        self.blend_net = ibr.BlendNet(d, h)

    # ------------------------------------------------------------ building
    @classmethod
    def from_scene(cls, scene, cfg: FourK4DConfig, generator: torch.Generator | None = None) -> "FourK4D":
        frames = frames_of(scene, "train", cfg.carve.min_cameras)
        cam_ids = [v.cam_id for v in next(iter(frames.values()))]
        for f, views in frames.items():
            if [v.cam_id for v in views] != cam_ids:
                raise DatasetError(f"frame {f} is seen by cameras {[v.cam_id for v in views]}, frame "
                                   f"{next(iter(frames))} by {cam_ids}: fourk4d needs every camera at every frame")
        if cfg.hull_from == "auto":  # resolved in place, so the run's config.yaml shows it
            cfg.hull_from = "masks" if scene.has_masks("train") else "background"
        use_masks = cfg.hull_from == "masks"
        bg = None if use_masks else scene.background
        positions, images, times, voxel = [], [], [], 0.0
        from tqdm import tqdm

        for f, views in tqdm(frames.items(), desc="carve", unit="frame"):
            masks = frame_masks(scene, views, bg, use_masks=use_masks)
            cams = Cameras.cat([scene.camera(v) for v in views])
            gen = torch.Generator().manual_seed(cfg.carve.seed + f)
            try:
                hull = carve_frame(cams, masks, scene.bounds, cfg.carve, gen)
            except DatasetError as e:
                raise DatasetError(f"frame {f}: {e}") from None
            images.append(torch.stack([torch.from_numpy(scene.image_uint8(v)) for v in views]))
            positions.append(frame_points(hull, cams, masks, images[-1].float() / 255.0, scene.bounds, cfg.carve, gen))
            voxel = hull.voxel_size
            times.append(float(views[0].time))
        cams = Cameras.cat([scene.camera(v) for v in next(iter(frames.values()))])
        b = scene.bounds.float()
        pad = 0.1 * (b[1] - b[0])
        background = normals = None
        if use_masks and cfg.background_points > 0:
            from splat4d.methods.fourk4d.background import background_points

            from splat4d.methods.fourk4d.background import background_shape

            background = background_points(scene, cfg.background_points, torch.Generator().manual_seed(cfg.carve.seed))
            background, normals = background_shape(background, b, cams.centers, cfg.background_discs,
                                                   cfg.background_plane, torch.Generator().manual_seed(cfg.carve.seed))
        return cls(cfg, torch.stack(positions), torch.tensor(times, device="cpu"), torch.stack(images), cams.viewmats, cams.Ks,
                   torch.stack([b[0] - pad, b[1] + pad]), voxel, background, normals)

    @classmethod
    def empty(cls, cfg: FourK4DConfig, state: dict) -> "FourK4D":
        z = lambda k: torch.zeros_like(state[k], device="cpu")  # noqa: E731
        background = z("background") if "background" in state else None  # runs saved before it existed have none
        return cls(cfg, z("positions"), z("frame_times"), z("images"), z("src_viewmats"), z("src_Ks"),
                   state["grid.bounds"].cpu(), float(state["voxel"]), background)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        state = dict(state)
        for name in ("background", "background_spacing", "background_attrs", "background_normals"):
            # runs saved before they existed
            state.setdefault(name, getattr(self, name).detach())
        return super().load_state_dict(state, strict=strict, assign=assign)

    # ------------------------------------------------------------ model
    @property
    def num_primitives(self) -> int:
        return int(self.positions.shape[1] + self.background.shape[0])

    def source_cameras(self) -> Cameras:
        H, W = self.images.shape[2:4]
        return Cameras(self.src_viewmats, self.src_Ks, int(W), int(H))

    def frame_at(self, t: float) -> int:
        return ibr.nearest_frame(self.frame_times, t)

    def points_at(self, f: int) -> dict[str, Tensor]:
        """Frame f's points: means [N, 3], radii [N], densities [N], sh [N, B, 3], features [N, D],
        displacement [N, 3] (world units), normals [N, 3] (disc normals, zero rows for round points) or None
        (all round)."""
        c, v = self.cfg, self.voxel
        n = self.positions.shape[1]
        base = torch.cat([self.positions[f], self.background]) if len(self.background) else self.positions[f]
        feats = self.grid(base, float(self.frame_times[f]))
        disp = torch.tanh(self.displacement(feats)) * (c.max_displacement * v)
        if len(self.background):  # the background points stay where they are
            disp = torch.cat([disp[:n], torch.zeros_like(disp[n:])])
        g = self.geometry(feats)
        sh = self.sh(feats).reshape(len(base), -1, 3)
        if len(self.background) and c.lr_background > 0:  # the background set's own offsets (zero when off)
            a = self.background_attrs
            g = torch.cat([g[:n], g[n:] + a[:, :2]])
            sh = torch.cat([sh[:n], sh[n:] + a[:, 2:].reshape(len(a), -1, 3)])
        radii = (c.radius_min + (c.radius_max - c.radius_min) * torch.sigmoid(g[:n, 0])) * v
        if len(self.background):  # a background point covers its share of the set however far apart they are
            radii = torch.cat([radii, self.background_spacing * (0.5 + 1.5 * torch.sigmoid(g[n:, 0]))])
        dens = torch.sigmoid(g[:, 1] + 2.0)
        normals = None
        if len(self.background) and bool(self.background_normals.any()):
            normals = torch.cat([self.background_normals.new_zeros(n, 3), self.background_normals])
        return {"means": base + disp, "radii": radii, "densities": dens, "sh": sh, "features": feats,
                "displacement": disp, "normals": normals}

    def blend_inputs(self, p: dict[str, Tensor], f: int, views: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Per (point, source view) of frame f: sampled colour [N, V, 3], whether the view sees the point
        [N, V] and the blend logit [N, V], over `views` (indices; default every source view). What a bake
        stores, and what a render blends over its chosen views."""
        src = self.source_cameras()
        imgs = self.images[f].float() / 255.0 if views is None else self.images[f, views].float() / 255.0
        src = src if views is None else src[views]
        col, valid = ibr.sample_colors(p["means"], src, imgs)
        return col, valid, self.blend_net(p["features"], col, ibr.source_dirs(p["means"], src))

    def colors_for(self, p: dict[str, Tensor], f: int, eye: Tensor) -> Tensor:
        """Colours [N, 3] of frame f's points seen from `eye` [3]: IBR blend of the nearest source views
        plus the SH residual."""
        views = ibr.nearest_views(eye[None], self.source_cameras().centers, self.grid.bounds.mean(0),
                                  self.cfg.source_views)[0]
        col, valid, logits = self.blend_inputs(p, f, views)
        return ibr.point_colors(ibr.blend(col, logits, valid, torch.arange(len(views), device=col.device)),
                                ibr.sh_residual(p["sh"], p["means"], eye))

    @torch.no_grad()
    def colored_points_at(self, t: float) -> tuple[Tensor, Tensor]:
        """(xyz [N, 3], rgb [N, 3]) of the frame nearest t for export: colours blended over every source
        view that sees a point, plus the SH residual's constant term (as a baked model exports them)."""
        f = self.frame_at(t)
        p = self.points_at(f)
        col, valid, logits = self.blend_inputs(p, f)
        blended = ibr.blend(col, logits, valid, torch.arange(col.shape[1], device=col.device))
        return p["means"], ibr.point_colors(blended, ibr.sh_dc_residual(p["sh"]))

    def render(self, cameras: Cameras, t: float, background: Tensor | None = None, **kw) -> RenderOutput:
        f = self.frame_at(t)
        p = self.points_at(f)
        k = self.cfg.k if self.training else self.cfg.k_render
        rgbs, alphas, depths = [], [], []
        for i in range(len(cameras)):
            cam = cameras[i]
            colors = self.colors_for(p, f, cam.centers[0])
            out = render_points(p["means"], p["radii"], p["densities"], colors, cam, k, background,
                                normals=p["normals"])
            rgbs.append(out["rgb"])
            alphas.append(out["alpha"][..., None])
            depths.append(out["depth"][..., None])
        meta = {"displacement": p["displacement"], "frame": f}
        return RenderOutput(torch.stack(rgbs), torch.stack(alphas), torch.stack(depths), meta)

    # ------------------------------------------------------------ training
    @property
    def wants_alphas(self) -> bool:
        return self.cfg.hull_from == "masks"

    def loss(self, batch: Batch, outs: list[RenderOutput], step: int) -> tuple[Tensor, dict]:
        c = self.cfg
        pred = torch.cat([o.rgb for o in outs])
        loss, logs = photometric_loss(pred, batch.images, c.lambda_ssim)
        alpha = torch.cat([o.alpha for o in outs])[..., 0]
        shown = ((batch.images - batch.background.to(batch.images)).abs().amax(-1) > FOREGROUND_THRESHOLD).to(alpha)
        if c.hull_from == "masks":
            fg = torch.maximum(batch.alphas.to(alpha), shown) if len(self.background) else batch.alphas.to(alpha)
        else:
            fg = shown
        mask = ((alpha - fg) ** 2).mean()
        disp = torch.stack([(o.meta["displacement"] / self.voxel).pow(2).mean() for o in outs]).mean()
        loss = loss + c.lambda_mask * mask + c.lambda_displacement * disp
        logs.update(mask=float(mask.detach()), displacement=float(disp.detach()))
        return loss, logs

    def param_groups(self, total_steps: int) -> list[ParamGroup]:
        c, v = self.cfg, float(self.voxel)
        nets = [*self.geometry.parameters(), *self.displacement.parameters(), *self.sh.parameters(),
                *self.blend_net.parameters()]
        groups = [
            ParamGroup("positions", [self.positions, self.background], c.lr_positions * v, c.lr_positions * v / 100,
                       total_steps),
            ParamGroup("grid", list(self.grid.parameters()), c.lr_grid, c.lr_grid / 10, total_steps),
            ParamGroup("mlp", nets, c.lr_mlp, c.lr_mlp / 10, total_steps),
        ]
        if c.lr_background > 0 and len(self.background):
            groups.append(ParamGroup("background_attrs", [self.background_attrs], c.lr_background,
                                     c.lr_background / 10, total_steps))
        return groups
