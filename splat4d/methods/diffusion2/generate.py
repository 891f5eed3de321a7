"""`splat4d generate diffusion2`: image or video → image matrix (stage 1) → deformable 4D fit (stage 2).

RUN/matrix/vVV_fFF.png (V×F images), RUN/matrix.mp4 (one grid of the V views per frame), RUN/scene (the matrix
as an EasyVolcap dataset on the orbit rig), RUN/fit (the `deformable` run: eval, render and export read it),
RUN/orbit.mp4 (the fit rendered around the orbit while time runs) and RUN/generate.json (settings, timings).
Under torchrun every rank samples its share of rows and columns and trains stage 2 data-parallel; rank 0
writes. A failed or interrupted run removes RUN (it is written whole or not at all)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from splat4d.errors import ConfigError, DatasetError
from splat4d.methods.diffusion2.stage2 import Stage2Config, Stage2Order, matrix_preview, matrix_scene, write_matrix_images
from splat4d.train import distributed as ddp

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class SampleSettings:
    """Stage 1 (Algorithm 1) settings."""

    steps: int = 50
    """Euler steps."""
    rollback: int = 5
    """Variance-reducing rollback in this many first steps (paper 5, its code 10)."""
    s: float = 0.5
    """Weight of the video score (1 − s: the multi-view score)."""
    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0
    chunk: Optional[int] = None
    """Sequences per denoiser call (None: all rows, then all columns, at once); lower it to save memory."""
    seed: int = 0


def square_rgb(img: np.ndarray, size: int, background=(1.0, 1.0, 1.0)) -> Tensor:
    """uint8/float [H, W, C] → [3, size, size] in [0, 1]: alpha composited on the background, padded to a
    square with it, resized."""
    import torch.nn.functional as Fn

    a = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:] + np.asarray(background, np.float32) * (1 - a[..., 3:])
    h, w = a.shape[:2]
    n = max(h, w)
    sq = np.empty((n, n, 3), np.float32)
    sq[:] = background
    sq[(n - h) // 2 : (n - h) // 2 + h, (n - w) // 2 : (n - w) // 2 + w] = a[..., :3]
    t = torch.from_numpy(sq).permute(2, 0, 1)[None]
    return Fn.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def read_video_frames(path: Path, frames: int, size: int) -> Tensor:
    """`frames` frames [F, 3, S, S] evenly spaced over a folder of images (sorted by name) or a video file."""
    path = Path(path)
    if path.is_dir():
        from splat4d.io.images import load_image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"--video {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        read = lambda i: load_image(files[i])  # noqa: E731
        count = len(files)
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        import imageio.v3 as iio

        try:
            all_frames = iio.imread(path)
        except Exception as e:  # imageio raises many types for unreadable files
            raise DatasetError(f"--video {path}: unreadable video ({str(e).splitlines()[0][:120]})") from None
        read = lambda i: all_frames[i]  # noqa: E731
        count = len(all_frames)
    else:
        raise DatasetError(f"--video {path}: expected a folder of frames or a video file ({', '.join(VIDEO_SUFFIXES)})")
    idx = np.round(np.linspace(0, count - 1, frames)).astype(int)
    return torch.stack([square_rgb(read(int(i)), size) for i in idx])


def write_outputs_rank0(run: Path, matrix: Tensor, fps: int) -> None:
    from splat4d.io.video import write_video

    write_matrix_images(matrix, run / "matrix")
    write_video(run / "matrix.mp4", matrix_preview(matrix), fps=fps)


def generate(run: Path, video_model, multiview_model, image: Optional[Path] = None, video: Optional[Path] = None,
             views: int = 21, frames: int = 25, size: int = 576, sample: SampleSettings = None, iters: int = 3000,
             stage2: Stage2Config = None, method_cfg=None, device: str = "auto", fps: int = 8,
             progress: bool = True) -> dict:
    """The whole pipeline (see the module docstring); returns what generate.json records."""
    from tqdm import tqdm

    from splat4d.data.easyvolcap import write_easyvolcap
    from splat4d.methods.deformable import DeformableConfig
    from splat4d.methods.diffusion2.distributed import sample_image_matrix_distributed
    from splat4d.methods.diffusion2.priors import load_priors
    from splat4d.train.run import DataConfig, fit, pick_device
    from splat4d.train.trainer import TrainConfig

    sample = sample or SampleSettings()
    stage2 = stage2 or Stage2Config()
    method_cfg = method_cfg or DeformableConfig()
    if (image is None) == (video is None):
        raise ConfigError("give exactly one of --image and --video")
    dev = ddp.init(pick_device(device))
    main = ddp.is_main()
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    times = {}
    t0 = time.perf_counter()
    priors = load_priors(video_model, multiview_model, dev, dtype, stage2.elevation_deg)
    shape = priors.space.latent_shape(size)
    if image is not None:
        from splat4d.io.images import load_image

        pixels = square_rgb(load_image(image), size)
        refs = {"image": priors.space.encode(pixels[None])[0].float()}
        ref_frame = 0
    else:
        clip = read_video_frames(video, frames, size)
        refs = {"ref_video": priors.space.encode(clip).float()}
        ref_frame = frames - 1  # the video's last frame is I00 (it conditions the multi-view prior)
    times["load_s"] = time.perf_counter() - t0
    bar = tqdm(total=sample.steps, desc="diffusion2 matrix", disable=not (progress and main), dynamic_ncols=True)
    t0 = time.perf_counter()
    latents = sample_image_matrix_distributed(
        priors.video, priors.multiview, views, frames, shape, num_steps=sample.steps, sigma_min=sample.sigma_min,
        sigma_max=sample.sigma_max, rho=sample.rho, s=sample.s, rollback_steps=sample.rollback,
        generator=torch.Generator().manual_seed(sample.seed), chunk=sample.chunk, device=dev,
        progress=lambda i: bar.update(1), **refs)
    bar.close()
    times["sample_s"] = time.perf_counter() - t0
    # row by row: the temporal decoder mixes the frames it decodes together, which must be one view's frames
    matrix = torch.stack([priors.space.decode(latents[v]).cpu() for v in range(views)])
    del priors, latents
    scene_dir, fit_dir = run / "scene", run / "fit"
    if main:
        write_outputs_rank0(run, matrix, fps)
        write_easyvolcap(matrix_scene(matrix, stage2), scene_dir)
    ddp.barrier()
    t0 = time.perf_counter()
    warmup = int(round(stage2.warmup_fraction * iters))
    order = Stage2Order(warmup, views, frames, ref_frame, stage2.far_weight)
    data = DataConfig(path=str(scene_dir.resolve()), background="white")
    result = fit("deformable", method_cfg, data, TrainConfig(iters=iters, device=device, seed=sample.seed), fit_dir,
                 progress=progress, view_order=order)
    times["fit_s"] = time.perf_counter() - t0
    record = {"views": views, "frames": frames, "size": size, "reference_frame": ref_frame,
              "input": str(image or video), "video_model": str(video_model), "multiview_model": str(multiview_model),
              "sample": asdict(sample), "stage2": asdict(stage2), "iters": iters, "fit_metrics": result, **times}
    if main:
        render_orbit(fit_dir, run / "orbit.mp4", frames=max(2 * views, 24), fps=fps)
        from splat4d.train.checkpoint import atomic_write_bytes

        atomic_write_bytes(run / "generate.json", json.dumps(record, indent=2, default=str).encode())
    return record


def render_orbit(fit_dir: Path, out: Path, frames: int, fps: int) -> Path:
    from splat4d.videos import render_video
    from splat4d.data import load_scene
    from splat4d.train.run import load_run, run_data_config

    method, config, _ = load_run(fit_dir)
    d = run_data_config(config, fit_dir)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    return render_video(method, scene, "orbit", out, frames=frames, fps=fps)


def generate_whole(run: Path, pipeline=None, **kwargs) -> dict:
    """`pipeline(run, **kwargs)` (default: Diffusion²'s `generate`) into a new folder RUN, removed again if
    anything fails or the run is interrupted."""
    run = Path(run)
    if ddp.env_rank() == 0 and run.exists() and any(run.iterdir()):
        raise ConfigError(f"--out {run} is not empty; choose a new folder")
    created = not run.exists()
    try:
        if ddp.env_rank() == 0:
            run.mkdir(parents=True, exist_ok=True)
        return (pipeline or generate)(run, **kwargs)
    except BaseException:
        if ddp.env_rank() == 0 and run.exists():
            if created:
                shutil.rmtree(run)
            else:  # it was given empty: leave it empty
                for p in run.iterdir():
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        raise
