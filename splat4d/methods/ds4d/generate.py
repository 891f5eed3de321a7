"""`splat4d generate ds4d`: a video and its pseudo multi-view images (a folder, or Zero123++ per frame) ->
a scene on one camera sphere (the video at azimuth 0) -> a `ds4d` fit with camera 0 as the input and every
pseudo view as a pseudo camera. Writes RUN/pseudo/ (vVV_fFF.png), RUN/scene/ (EasyVolcap), RUN/fit/ (an
ordinary run: eval / render / export work on it), RUN/orbit.mp4 and RUN/generate.json."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.data.scene import ArrayImage, DynamicScene, View
from splat4d.methods.ds4d.sources import FOV_DEG, PseudoViews, view_cameras

EXTENT = 0.6
"""Half-size of the scene box around the sphere's centre (what the FOV covers at radius 2)."""


def pseudo_scene(frames: torch.Tensor, pseudo: PseudoViews, name: str = "ds4d") -> DynamicScene:
    """Input frames [T, 3, S, S] (camera 0) and pseudo views (cameras 1..V) -> a DynamicScene whose views
    all train (no ground truth is held out: a generated scene's metrics are on its own views)."""
    T, size = frames.shape[0], frames.shape[-1]
    cams = Cameras.cat([view_cameras((0.0,), (0.0,), FOV_DEG, size),
                        view_cameras(pseudo.azimuths, pseudo.elevations, pseudo.fov_deg, size)])
    images = torch.cat([frames[None], pseudo.images])  # [V + 1, T, 3, S, S]
    arr = (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    views = [View(cams[v], f / (T - 1) if T > 1 else 0.0, v, f, ArrayImage(np.ascontiguousarray(arr[v, f]), f"v{v:02d}_f{f:02d}"))
             for f in range(T) for v in range(len(images))]
    return DynamicScene(name, "easyvolcap", {"train": views}, background=(1.0, 1.0, 1.0),
                        bounds=torch.tensor([[-EXTENT] * 3, [EXTENT] * 3], device="cpu"), num_cameras=len(images), num_frames=T)


def generate(run: Path, video: Path, source, frames: int = 16, size: int = 256, method_cfg=None, iters: int = 3000,
             device: str = "auto", seed: int = 0, fps: int = 8, progress: bool = True) -> dict:
    """The whole pipeline (see the module docstring); returns what generate.json records."""
    from splat4d.data.easyvolcap import write_easyvolcap
    from splat4d.methods.diffusion2.generate import read_video_frames, render_orbit
    from splat4d.methods.diffusion2.stage2 import write_matrix_images
    from splat4d.methods.ds4d.method import DS4DConfig
    from splat4d.train.checkpoint import atomic_write_bytes
    from splat4d.train.run import DataConfig, fit
    from splat4d.train.trainer import TrainConfig

    t0 = time.perf_counter()
    clip = read_video_frames(video, frames, size)
    pseudo = source(clip)
    write_matrix_images(torch.cat([clip[None], pseudo.images]), run / "pseudo")
    scene_dir = run / "scene"
    write_easyvolcap(pseudo_scene(clip, pseudo), scene_dir)
    views_s = time.perf_counter() - t0
    cfg = dataclasses.replace(method_cfg or DS4DConfig(), input_camera=0,
                              pseudo_cameras=tuple(range(1, len(pseudo.images) + 1)))
    t0 = time.perf_counter()
    data = DataConfig(path=str(scene_dir.resolve()), background="white")
    result = fit("ds4d", cfg, data, TrainConfig(iters=iters, device=device, seed=seed), run / "fit", progress=progress)
    fit_s = time.perf_counter() - t0
    render_orbit(run / "fit", run / "orbit.mp4", frames=max(2 * frames, 24), fps=fps)
    record = {"video": str(video), "frames": frames, "size": size, "pseudo_views": len(pseudo.images),
              "pseudo_source": type(source).__name__, "azimuths": pseudo.azimuths, "elevations": pseudo.elevations,
              "iters": iters, "fit_metrics": result, "views_s": views_s, "fit_s": fit_s,
              "note": "no view is held out: the metrics are on the input and pseudo views"}
    atomic_write_bytes(run / "generate.json", json.dumps(record, indent=2, default=str).encode())
    return record
