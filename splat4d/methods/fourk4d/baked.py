"""A baked `fourk4d` model (`splat4d bake RUN -o DIR`): the networks evaluated once and dropped.

Per frame it stores the points' positions, radii, densities and SH residual coefficients (and once, the
disc normals of a background drawn as discs), and per
(point, source view) the sampled colour, the blend logit and whether the view sees the point: all that
the view-independent part of 4K4D's renderer produces. Rendering a view then only picks the nearest
source views, blends, adds the SH residual and peels. Colours, densities and SH are stored in fp16
(`precision`); positions, radii and logits in fp32. A position rounded to fp16 moves by up to ~5e-4 of the
scene's size, enough to swap two nearly coincident points' depth order; a radius's rounding moves the
alpha of every pixel near a point's rim; and a trained model's logits reach magnitudes where fp16's
absolute error changes blend weights by ~1e-3 (measured: 1.5e-3 max abs pixel difference from the logits
alone, 2.4e-4 from the colours, on the synthetic default scene).

A baked model is a run folder like any other (config.yaml naming method `fourk4d_baked`, checkpoint.pt
with the tensors), so `eval`, `render` and `export` read it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.config_checks import check_choice, check_int
from splat4d.errors import ConfigError
from splat4d.methods.base import Method, register
from splat4d.methods.fourk4d import ibr
from splat4d.render import RenderOutput
from splat4d.render.points import render_points

STORED = ("densities", "sh", "colors")
"""Values stored at `precision`; positions, radii and logits stay fp32 (see the module docstring)."""


@dataclass
class BakedConfig:
    """A baked fourk4d model (made by `splat4d bake`, not trained)."""

    k_render: int = 15
    """Points composited per pixel (a bake copies the model's `k_render`)."""
    source_views: int = 4
    """Source views blended per rendered view."""
    precision: str = "fp16"
    """Storage of colours, densities and SH: fp16 or fp32 (positions, radii and logits are always fp32)."""

    def validate(self, prefix: str = "method") -> None:
        check_int(f"{prefix}.k_render", self.k_render, 1)
        check_int(f"{prefix}.source_views", self.source_views, 1)
        check_choice(f"{prefix}.precision", self.precision, ("fp16", "fp32"))


@register
class BakedFourK4D(Method):
    name = "fourk4d_baked"
    Config = BakedConfig

    def __init__(self, cfg: BakedConfig, tensors: dict[str, Tensor]):
        super().__init__(cfg)
        for name, value in tensors.items():
            self.register_buffer(name, value)

    @classmethod
    def from_scene(cls, scene, cfg, generator=None):
        raise ConfigError("fourk4d_baked is made from a fourk4d run by `splat4d bake RUN -o DIR`, not trained")

    @classmethod
    def empty(cls, cfg: BakedConfig, state: dict) -> "BakedFourK4D":
        return cls(cfg, {k: torch.zeros_like(v, device="cpu") for k, v in state.items()})

    @property
    def num_primitives(self) -> int:
        return int(self.means.shape[1])

    def source_cameras(self) -> Cameras:
        return Cameras(self.src_viewmats, self.src_Ks, int(self.src_size[0]), int(self.src_size[1]))

    def views_for(self, eye: Tensor) -> Tensor:
        """[n] indices of the source views nearest a camera at `eye` (the views a render blends)."""
        return ibr.nearest_views(eye[None], self.src_centers, self.centre, self.cfg.source_views)[0]

    def chosen(self, f: int, eye: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(colours [N, n, 3] float32, logits [N, n], valid [N, n]) of frame f's points in the n source views
        nearest a camera at `eye` (gathered before widening fp16 to float32: a tenth of the conversion)."""
        views = self.views_for(eye)
        return self.colors[f][:, views].float(), self.logits[f][:, views], self.valid[f][:, views]

    def point_colors(self, f: int, eye: Tensor, fused: bool = True, need: Tensor | None = None) -> Tensor:
        """[N, 3] colours the peel composites: the softmax blend of the chosen views plus the SH residual
        seen from `eye`, clamped. On the CPU one numba pass over the stored arrays (`shade_cpu`; only the
        points `need` marks, when given; the softmax numerators of every frame computed on the first call
        and kept, not stored) unless not `fused`; else torch (every point)."""
        means = self.means[f]
        if fused and means.device.type == "cpu":
            from splat4d.methods.fourk4d.shade_cpu import blend_weights, shade_cpu

            # every frame's softmax numerators, once per model (again after the logits change, in place too)
            key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in (self.logits, self.valid))
            if getattr(self, "_weights_key", None) != key:
                self._weights, self._weights_key = blend_weights(self.logits, self.valid), key
            return shade_cpu(self.colors[f], self.logits[f], self.valid[f], self.sh[f], means, eye, self.views_for(eye),
                             need, self._weights[f])
        colors, logits, valid = self.chosen(f, eye)
        blended = ibr.blend(colors, logits, valid, torch.arange(colors.shape[1], device=colors.device))
        return ibr.point_colors(blended, ibr.sh_residual(self.sh[f].float(), means, eye))

    @property
    def disc_normals(self) -> Tensor | None:
        """[N, 3] every frame's disc normals (zero rows: round points), or None (all round; bakes made before
        discs existed)."""
        return getattr(self, "normals", None)

    def peel(self, f: int, colors: Tensor, cam: Cameras, background: Tensor | None = None) -> dict[str, Tensor]:
        return render_points(self.means[f], self.radii[f], self.densities[f].float(), colors, cam, self.cfg.k_render,
                             background, normals=self.disc_normals)

    @property
    def src_centers(self) -> Tensor:
        return self.source_cameras().centers

    def render(self, cameras: Cameras, t: float, background: Tensor | None = None, **kw) -> RenderOutput:
        f = ibr.nearest_frame(self.frame_times, t)
        rgbs, alphas, depths = [], [], []
        for i in range(len(cameras)):
            cam = cameras[i]
            eye = cam.centers[0]
            if self.means.device.type == "cpu":  # numba: select first, then shade only the points composited
                from splat4d.render.points_cpu import peel_cpu

                out = peel_cpu(self.means[f], self.radii[f], self.densities[f].float(),
                               lambda need: self.point_colors(f, eye, need=need), cam, self.cfg.k_render, background,
                               self.disc_normals)
            else:
                out = self.peel(f, self.point_colors(f, eye), cam, background)
            rgbs.append(out["rgb"])
            alphas.append(out["alpha"][..., None])
            depths.append(out["depth"][..., None])
        return RenderOutput(torch.stack(rgbs), torch.stack(alphas), torch.stack(depths), {"frame": f})

    @torch.no_grad()
    def colored_points_at(self, t: float) -> tuple[Tensor, Tensor]:
        """(xyz [N, 3], rgb [N, 3]) of the frame nearest t, coloured by the blend of every source view that
        sees a point (view-independent: for export) plus the SH residual's constant term."""
        f = ibr.nearest_frame(self.frame_times, t)
        views = torch.arange(self.colors.shape[2], device=self.colors.device)
        blended = ibr.blend(self.colors[f].float(), self.logits[f], self.valid[f], views)
        return self.means[f], ibr.point_colors(blended, ibr.sh_dc_residual(self.sh[f].float()))

    def loss(self, batch, outs, step):
        raise ConfigError("a baked fourk4d model cannot be trained")

    def param_groups(self, total_steps: int):
        return []


@torch.no_grad()
def bake(model, precision: str = "fp16") -> BakedFourK4D:
    """Evaluate a trained `fourk4d` model's view-independent outputs for every frame (see the module)."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model.eval()
    out: dict[str, list[Tensor]] = {k: [] for k in ("means", "radii", "densities", "sh", "colors", "logits", "valid")}
    for f in range(model.positions.shape[0]):
        p = model.points_at(f)
        col, valid, logits = model.blend_inputs(p, f)
        values = {"means": p["means"], "radii": p["radii"], "densities": p["densities"], "sh": p["sh"],
                  "colors": col, "logits": logits, "valid": valid}
        for k, v in values.items():
            out[k].append(v)
    tensors = {k: torch.stack(v) for k, v in out.items()}
    for k in STORED:
        tensors[k] = tensors[k].to(dtype)
    H, W = model.images.shape[2:4]
    tensors.update(frame_times=model.frame_times.clone(), src_viewmats=model.src_viewmats.clone(),
                   src_Ks=model.src_Ks.clone(), src_size=torch.tensor([int(W), int(H)], device=model.images.device),
                   centre=model.grid.bounds.mean(0))
    if p["normals"] is not None:  # the same every frame: the background's, zero rows for the frame's own points
        tensors["normals"] = p["normals"].clone()
    cfg = BakedConfig(k_render=model.cfg.k_render, source_views=model.cfg.source_views, precision=precision)
    return BakedFourK4D(cfg, {k: v.contiguous().cpu() for k, v in tensors.items()})


def bake_run(run_dir: Path, out: Path, precision: str = "fp16") -> BakedFourK4D:
    """Bake the fourk4d run in `run_dir` into run folder `out` (written whole: a temporary folder renamed)."""
    import dataclasses

    from splat4d.train.checkpoint import write_run_folder
    from splat4d.train.run import load_run

    out = Path(out)
    if (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; choose another --out")
    model, config, step = load_run(run_dir, "cpu")
    if config["method"] != "fourk4d":
        raise ConfigError(f"{run_dir} is a {config['method']!r} run; bake takes a fourk4d run")
    baked = bake(model, precision)
    config = {**config, "method": "fourk4d_baked", "method_config": dataclasses.asdict(baked.cfg),
              "baked_from": str(run_dir)}
    write_run_folder(out, baked, config, step)
    return baked
