"""Diffusion² stage 2: the sampled image matrix becomes a DynamicScene on an orbit rig (V azimuths at one
elevation, FOV 33.8°, radius 2, as the paper), written in the EasyVolcap layout so that eval / render /
export read the fitted run, and is fitted with `deformable`: a warm-up on the reference frame's views, then
the whole matrix with views sampled less often the further they are from the reference view and frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.config_checks import check_float, check_int
from splat4d.data.scene import ArrayImage, DynamicScene, View
from splat4d.errors import ConfigError


@dataclass
class Stage2Config:
    """How the matrix is turned into a 4D fit."""

    radius: float = 2.0
    """Orbit radius of the generated views (the multi-view prior's camera distance)."""
    fov_deg: float = 33.8
    """Field of view of the generated views (SV3D's)."""
    elevation_deg: float = 0.0
    """Elevation of the orbit."""
    extent: float = 0.6
    """Half-size of the scene box around the orbit centre (what the FOV covers at the radius)."""
    warmup_fraction: float = 0.3
    """Share of the iterations trained on the reference frame's views only."""
    far_weight: float = 0.4
    """Sampling weight of the view and frame furthest from the reference (the reference has 1; linear in
    between: the matrix is least certain far from its references)."""
    holdout_every: int = 7
    """Hold out views v with v % holdout_every == holdout_every // 2 as the test split (0: none; the test split
    is then the training views, and the metrics say nothing about novel views)."""

    def validate(self, prefix: str = "stage2") -> None:
        check_float(f"{prefix}.radius", self.radius, 0, lo_open=True)
        check_float(f"{prefix}.fov_deg", self.fov_deg, 0, 179, lo_open=True)
        check_float(f"{prefix}.elevation_deg", self.elevation_deg, -89, 89)
        check_float(f"{prefix}.extent", self.extent, 0, lo_open=True)
        check_float(f"{prefix}.warmup_fraction", self.warmup_fraction, 0, 1)
        check_float(f"{prefix}.far_weight", self.far_weight, 0, 1, lo_open=True)
        check_int(f"{prefix}.holdout_every", self.holdout_every, 0)


def orbit_rig(views: int, size: int, cfg: Stage2Config) -> Cameras:
    """View v at azimuth 360·v/V about +z, looking at the origin (view 0 = the reference view)."""
    return Cameras.orbit(views, cfg.radius, elevation_deg=cfg.elevation_deg, fov_deg=cfg.fov_deg, width=size, height=size)


def held_out(v: int, cfg: Stage2Config) -> bool:
    k = cfg.holdout_every
    return k > 0 and v % k == k // 2 and v != 0


def matrix_scene(matrix: Tensor, cfg: Stage2Config, background=(1.0, 1.0, 1.0), name: str = "diffusion2") -> DynamicScene:
    """[V, F, 3, S, S] images in [0, 1] → a DynamicScene (time f / (F − 1); train / test by `holdout_every`)."""
    if matrix.dim() != 5 or matrix.shape[2] != 3 or matrix.shape[3] != matrix.shape[4]:
        raise ConfigError(f"image matrix must be [V, F, 3, S, S], got {tuple(matrix.shape)}")
    nv, nf, size = matrix.shape[0], matrix.shape[1], matrix.shape[3]
    if nv < 2:
        raise ConfigError(f"stage 2 needs at least 2 views to reconstruct, got {nv}")
    cams = orbit_rig(nv, size, cfg)
    arr = (matrix.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    splits: dict[str, list[View]] = {"train": [], "test": []}
    for v in range(nv):
        for f in range(nf):
            t = f / (nf - 1) if nf > 1 else 0.0
            view = View(cams[v], t, v, f, ArrayImage(np.ascontiguousarray(arr[v, f]), f"v{v:02d}_f{f:02d}"))
            splits["test" if held_out(v, cfg) else "train"].append(view)
    if not splits["test"]:
        splits["test"] = list(splits["train"])
    e = cfg.extent
    return DynamicScene(name, "easyvolcap", splits, background=tuple(background),
                        bounds=torch.tensor([[-e] * 3, [e] * 3], device="cpu"), num_cameras=nv, num_frames=nf)


def view_weights(cam_ids: Tensor, frame_ids: Tensor, views: int, frames: int, ref_frame: int, far_weight: float) -> Tensor:
    """1 at the reference view (0) and frame, `far_weight` at the opposite view and the furthest frame."""
    az = (cam_ids.float() * 360.0 / views) % 360
    d_view = torch.minimum(az, 360 - az) / 180.0
    span = max(frames - 1 - ref_frame, ref_frame, 1)
    d_frame = (frame_ids.float() - ref_frame).abs() / span
    return 1 - (1 - far_weight) * (d_view + d_frame) / 2


class Stage2Order:
    """The Trainer's view_order: reference-frame views only until `warmup_iters`, then all training views
    drawn with replacement in proportion to `view_weights`."""

    def __init__(self, warmup_iters: int, views: int, frames: int, ref_frame: int, far_weight: float):
        self.warmup_iters, self.views, self.frames = warmup_iters, views, frames
        self.ref_frame, self.far_weight = ref_frame, far_weight

    def __call__(self, step: int, gen: torch.Generator, views: list[View]) -> list[int]:
        cams = torch.tensor([v.cam_id for v in views], device="cpu")
        frames = torch.tensor([v.frame_id for v in views], device="cpu")
        if step < self.warmup_iters:
            ref = torch.nonzero(frames == self.ref_frame).flatten()
            if len(ref):
                return ref[torch.randperm(len(ref), generator=gen, device="cpu")].tolist()
        w = view_weights(cams, frames, self.views, self.frames, self.ref_frame, self.far_weight)
        return torch.multinomial(w, len(views), replacement=True, generator=gen).tolist()


def write_matrix_images(matrix: Tensor, out: Path) -> list[Path]:
    """RUN/matrix/vVV_fFF.png for every image of [V, F, 3, H, W] in [0, 1]."""
    from splat4d.io.images import save_image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in range(matrix.shape[0]):
        for f in range(matrix.shape[1]):
            paths.append(save_image(out / f"v{v:02d}_f{f:02d}.png", matrix[v, f].permute(1, 2, 0)))
    return paths


def matrix_preview(matrix: Tensor) -> list:
    """One frame per matrix frame: the V views tiled in a near-square grid (reading order = view order)."""
    from splat4d.io.images import image_grid

    views = matrix.clamp(0, 1).permute(1, 0, 3, 4, 2).cpu().numpy()  # [F, V, H, W, 3]
    cols = int(np.ceil(np.sqrt(matrix.shape[0])))
    return [image_grid(list(frame), cols=cols, gap=2, fill=1.0) for frame in views]
