"""Pseudo multi-view images for DS4D: "views of frame t from other cameras", with those cameras.

A source turns the input video's frames [T, 3, S, S] into `PseudoViews` (images [V, T, 3, S, S] and the V
cameras, the input camera at azimuth 0, elevation 0 on the same sphere). Three sources:

- `FolderViews`: a folder of `vVV_fFF.png` images (the matrix `splat4d generate diffusion2` writes);
  view v sits at azimuth 360 v / V on Diffusion²'s orbit (radius 2, FOV 33.8°, elevation 0) and view 0
  (the reference view, which is the input video itself in a Diffusion² matrix) is not used as a pseudo view.
- `Zero123ppViews`: Zero123++ (a diffusers custom pipeline from a local directory holding its
  `pipeline.py` and weights), run per frame: its 3 x 2 grid of 320² tiles gives six views at azimuths
  30°..330° relative to the input and elevations 20°/-10° alternating (v1.2's fixed poses, FOV 30°).
- the other cameras of a multi-view dataset: no source object, `fit ds4d --method.pseudo-cameras`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.errors import DatasetError, WeightsNotFound

RADIUS = 2.0
FOV_DEG = 33.8
ZERO123PP_AZIMUTHS = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
ZERO123PP_ELEVATIONS = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
ZERO123PP_FOV_DEG = 30.0
ZERO123PP_ID = "sudo-ai/zero123plus-v1.2"


@dataclass
class PseudoViews:
    images: Tensor  # [V, T, 3, S, S] in [0, 1]
    azimuths: tuple[float, ...]  # degrees, relative to the input camera
    elevations: tuple[float, ...]
    fov_deg: float


def view_cameras(azimuths, elevations, fov_deg: float, size: int, radius: float = RADIUS) -> Cameras:
    """Cameras at (azimuth, elevation) pairs on a sphere of `radius`, looking at the origin, z up."""
    return Cameras.cat([Cameras.orbit(1, radius, elevation_deg=el, fov_deg=fov_deg, width=size, height=size, start_deg=az)
                        for az, el in zip(azimuths, elevations)])


class FolderViews:
    """`vVV_fFF.png` images of a folder (see the module docstring)."""

    PATTERN = re.compile(r"^v(\d+)_f(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DatasetError(f"--pseudo-views {self.path}: no such folder (expected vVV_fFF.png images, the "
                               f"matrix/ folder of `splat4d generate diffusion2`)")
        self.files = {}
        for p in self.path.iterdir():
            m = self.PATTERN.match(p.name)
            if m:
                self.files[int(m.group(1)), int(m.group(2))] = p
        if not self.files:
            raise DatasetError(f"--pseudo-views {self.path}: no vVV_fFF.png images in the folder")
        self.views = max(v for v, _ in self.files) + 1
        self.frames = max(f for _, f in self.files) + 1
        missing = [f"v{v:02d}_f{f:02d}" for v in range(1, self.views) for f in range(self.frames) if (v, f) not in self.files]
        if missing or self.views < 2:
            raise DatasetError(f"--pseudo-views {self.path}: missing {', '.join(missing[:4]) or 'views besides v00'}"
                               f"{' ...' if len(missing) > 4 else ''} (every view 1..V-1 needs every frame)")

    def __call__(self, frames: Tensor) -> PseudoViews:
        from splat4d.io.images import load_image
        from splat4d.methods.diffusion2.generate import square_rgb

        T, size = frames.shape[0], frames.shape[-1]
        idx = np.round(np.linspace(0, self.frames - 1, T)).astype(int)  # the folder's frames spread over the video's
        images = torch.stack([torch.stack([square_rgb(load_image(self.files[v, int(f)]), size) for f in idx])
                              for v in range(1, self.views)])
        az = tuple(360.0 * v / self.views for v in range(1, self.views))
        return PseudoViews(images, az, (0.0,) * len(az), FOV_DEG)


class Zero123ppViews:
    """Zero123++ per frame (loaded offline from `model_dir` on first use)."""

    def __init__(self, model_dir: str | Path, steps: int = 28, device="cpu"):
        self.model_dir, self.steps, self.device = Path(model_dir), steps, torch.device(device)
        self._pipe = None

    def pipe(self):
        if self._pipe is None:
            self._pipe = load_zero123pp(self.model_dir, self.device)
        return self._pipe

    def __call__(self, frames: Tensor) -> PseudoViews:
        from PIL import Image

        size = frames.shape[-1]
        out = []
        for frame in frames:
            pil = Image.fromarray((frame.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy())
            grid = self.pipe()(pil, num_inference_steps=self.steps).images[0]
            out.append(split_grid(torch.from_numpy(np.asarray(grid.convert("RGB"))).float() / 255, size))
        return PseudoViews(torch.stack(out, 1), ZERO123PP_AZIMUTHS, ZERO123PP_ELEVATIONS, ZERO123PP_FOV_DEG)


def split_grid(grid: Tensor, size: int, rows: int = 3, cols: int = 2) -> Tensor:
    """A [H, W, 3] grid of rows x cols tiles -> [rows * cols, 3, size, size], row-major."""
    H, W = grid.shape[:2]
    if H % rows or W % cols:
        raise DatasetError(f"Zero123++ returned a {W}x{H} image, not a {cols}x{rows} grid of equal tiles")
    th, tw = H // rows, W // cols
    tiles = grid.reshape(rows, th, cols, tw, 3).permute(0, 2, 4, 1, 3).reshape(rows * cols, 3, th, tw)
    return Fn.interpolate(tiles, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def load_zero123pp(model_dir: Path, device):
    """The Zero123++ pipeline from a local directory (model_index.json, weights and its pipeline.py), offline."""
    hint = (f"download {ZERO123PP_ID} and its custom pipeline (sudo-ai/zero123plus-pipeline: pipeline.py) into one "
            f"folder and pass it as --zero123pp-model")
    if not (model_dir / "model_index.json").is_file():
        raise WeightsNotFound(f"Zero123++ weights not found in {model_dir} (no model_index.json): {hint}")
    if not (model_dir / "pipeline.py").is_file():
        raise WeightsNotFound(f"{model_dir} has no pipeline.py (Zero123++'s custom pipeline): {hint}")
    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        raise WeightsNotFound("Zero123++ needs the generation extra: pip install 'splat4d[gen]'") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = DiffusionPipeline.from_pretrained(str(model_dir), custom_pipeline=str(model_dir), local_files_only=True)
    except (OSError, ValueError, ImportError, AttributeError) as e:
        raise WeightsNotFound(f"{model_dir}: Zero123++ did not load ({str(e).splitlines()[0][:160]}): {hint}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
