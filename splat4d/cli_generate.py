"""`splat4d generate diffusion2` and `splat4d generate ds4d`, kept apart from cli.py, which loads no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import tyro

from splat4d import config_checks as cc
from splat4d.methods.deformable import DeformableConfig
from splat4d.methods.diffusion2.generate import SampleSettings
from splat4d.methods.diffusion2.stage2 import Stage2Config
from splat4d.methods.ds4d.method import DS4DConfig


@dataclass
class GenerateDiffusion2:
    """Generate 4D content with Diffusion²: an image or a video → a V×F image matrix → a deformable 4D fit."""

    video_model: Path
    """SVD pipeline directory (stabilityai/stable-video-diffusion-img2vid-xt in diffusers' layout)."""
    multiview_model: Path
    """SV3D_p converted to the same StableVideoDiffusionPipeline layout (per-view camera ids)."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("diffusion2_run")
    """New folder: matrix/, matrix.mp4, scene/, fit/, orbit.mp4, generate.json."""
    image: Optional[Path] = None
    """Image-to-4D: the reference image (RGBA is composited on white)."""
    video: Optional[Path] = None
    """Video-to-4D: a folder of frames or a video file; its last frame conditions the multi-view prior."""
    views: int = 21
    """Views of the orbit (V; SV3D makes 21)."""
    frames: int = 25
    """Frames (F; SVD-xt makes 25)."""
    size: int = 576
    """Image size (square; a multiple of the VAE's downsampling factor)."""
    steps: int = 50
    """Euler steps of stage 1."""
    rollback: int = 5
    """Variance-reducing rollback in the first steps."""
    s: float = 0.5
    """Weight of the video score (1 − s: the multi-view score)."""
    chunk: Optional[int] = None
    """Sequences per denoiser call (lower: less memory, slower)."""
    iters: int = 3000
    """Stage-2 (deformable) iterations."""
    seed: int = 0
    """Seed of the sampler and of the fit."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N (torchrun: one rank per GPU)."""
    stage2: Stage2Config = field(default_factory=Stage2Config)
    method: DeformableConfig = field(default_factory=DeformableConfig)

    def validate(self) -> None:
        for name, p in (("--video-model", self.video_model), ("--multiview-model", self.multiview_model)):
            cc.check_path(name, p)
        cc.check_path("--image", self.image, optional=True)
        cc.check_path("--video", self.video, optional=True)
        if (self.image is None) == (self.video is None):
            from splat4d.errors import ConfigError

            raise ConfigError("give exactly one of --image (image-to-4D) and --video (video-to-4D)")
        src = self.image or self.video
        if not Path(src).exists():
            from splat4d.errors import DatasetError

            raise DatasetError(f"{'--image' if self.image else '--video'} {src}: no such file or folder")
        cc.check_int("--views", self.views, 2, 1024)
        cc.check_int("--frames", self.frames, 1, 1024)
        cc.check_int("--size", self.size, 8, 4096)
        cc.check_int("--steps", self.steps, 1, 10000)
        cc.check_int("--rollback", self.rollback, 0, self.steps)
        cc.check_float("--s", self.s, 0, 1)
        if self.chunk is not None:
            cc.check_int("--chunk", self.chunk, 1)
        cc.check_int("--iters", self.iters, 1)
        cc.check_int("--seed", self.seed, 0, 2**32 - 1)
        cc.check_device("--device", self.device)
        cc.check_output_dir("--out", self.out)
        self.stage2.validate("--stage2")
        self.method.validate("--method")

    def run(self) -> int:
        from splat4d.methods.diffusion2.generate import generate_whole
        from splat4d.train import distributed as ddp

        sample = SampleSettings(steps=self.steps, rollback=self.rollback, s=self.s, chunk=self.chunk, seed=self.seed)
        rec = generate_whole(self.out, video_model=self.video_model, multiview_model=self.multiview_model,
                             image=self.image, video=self.video, views=self.views, frames=self.frames, size=self.size,
                             sample=sample, iters=self.iters, stage2=self.stage2, method_cfg=self.method,
                             device=self.device)
        if ddp.is_main():
            m = rec["fit_metrics"]
            psnr = f"{m['psnr']:.2f} dB" if isinstance(m.get("psnr"), (int, float)) else "n/a"
            print(f"matrix {self.views}x{self.frames} at {self.size}^2 in {rec['sample_s']:.1f} s; "
                  f"stage 2: {self.iters} iterations in {rec['fit_s']:.1f} s, held-out PSNR {psnr}")
            print(f"wrote {self.out}/matrix/, matrix.mp4, scene/, fit/, orbit.mp4, generate.json")
        return 0


@dataclass
class GenerateDS4D:
    """Generate 4D content with DS4D: a video and its pseudo multi-view images -> a ds4d fit."""

    video: Path
    """The input video: a folder of frames or a video file (it is camera 0)."""
    pseudo_views: Optional[Path] = None
    """A folder of vVV_fFF.png pseudo views (e.g. RUN/matrix of `splat4d generate diffusion2`; view v at
    azimuth 360 v / V, v00 not used)."""
    zero123pp_model: Optional[Path] = None
    """Instead of --pseudo-views: a Zero123++ directory (weights + its pipeline.py), run on every frame."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("ds4d_run")
    """New folder: pseudo/, scene/, fit/, orbit.mp4, generate.json."""
    frames: int = 16
    """Frames taken from the video (evenly spaced)."""
    size: int = 256
    """Image size (square)."""
    iters: int = 3000
    """ds4d iterations."""
    seed: int = 0
    """Seed of the fit."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    method: DS4DConfig = field(default_factory=DS4DConfig)

    def validate(self) -> None:
        from splat4d.errors import ConfigError, DatasetError

        cc.check_path("--video", self.video)
        if not Path(self.video).exists():
            raise DatasetError(f"--video {self.video}: no such file or folder")
        if (self.pseudo_views is None) == (self.zero123pp_model is None):
            raise ConfigError("give exactly one of --pseudo-views (a folder) and --zero123pp-model")
        cc.check_path("--pseudo-views", self.pseudo_views, optional=True)
        cc.check_path("--zero123pp-model", self.zero123pp_model, optional=True)
        cc.check_int("--frames", self.frames, 1, 1024)
        cc.check_int("--size", self.size, 14, 4096)
        cc.check_int("--iters", self.iters, 1)
        cc.check_int("--seed", self.seed, 0, 2**32 - 1)
        cc.check_device("--device", self.device)
        cc.check_output_dir("--out", self.out)
        self.method.validate("--method")

    def run(self) -> int:
        from splat4d.methods.diffusion2.generate import generate_whole
        from splat4d.methods.ds4d.generate import generate
        from splat4d.methods.ds4d.sources import FolderViews, Zero123ppViews

        source = FolderViews(self.pseudo_views) if self.pseudo_views else Zero123ppViews(self.zero123pp_model)
        rec = generate_whole(self.out, pipeline=generate, video=self.video, source=source, frames=self.frames,
                             size=self.size, method_cfg=self.method, iters=self.iters, device=self.device, seed=self.seed)
        m = rec["fit_metrics"]
        print(f"{rec['pseudo_views']} pseudo views x {self.frames} frames; ds4d: {self.iters} iterations in "
              f"{rec['fit_s']:.1f} s, PSNR on its own views {m['psnr']:.2f} dB (features: {m.get('features')})")
        print(f"wrote {self.out}/pseudo/, scene/, fit/, orbit.mp4, generate.json")
        return 0
