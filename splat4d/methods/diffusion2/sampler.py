"""Diffusion² stage 1: sample a V×F image matrix by composing a video prior (along each view's row) and a
multi-view prior (along each frame's column), with the variance-reducing rollback of Algorithm 1.

A denoiser is an EDM x0-predictor `D(x, sigma, cond) -> x0`: `x` [B, L, C, H, W] holds B sequences of length L
(frames for the video prior, views for the multi-view prior), `sigma` [B], `cond` [B, C, H, W] or None. The
sampler works in whatever space the denoisers do (pixels for the closed-form tests, VAE latents for SVD/SV3D).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from splat4d.errors import ConfigError

Denoiser = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]
Schedule = Union[float, Sequence[float], Tensor]


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> Tensor:
    """Karras et al. noise levels σ_0 > … > σ_{N-1} and a final σ_N = 0 (float64, N + 1 values)."""
    if num_steps < 1:
        raise ConfigError(f"num_steps must be at least 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ConfigError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if rho <= 0:
        raise ConfigError(f"rho must be positive, got {rho}")
    i = torch.arange(num_steps, dtype=torch.float64, device="cpu")
    frac = i / max(num_steps - 1, 1)
    s = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64, device="cpu")])


def step_weights(s: Schedule, num_steps: int) -> list[float]:
    """The video (row) weight of each step: one number for all steps, or one per step, each in [0, 1]."""
    if isinstance(s, Tensor):
        s = s.detach().cpu().flatten().tolist()
    if isinstance(s, (int, float)):
        values = [float(s)] * num_steps
    else:
        values = [float(v) for v in s]
        if len(values) != num_steps:
            raise ConfigError(f"s has {len(values)} values; one per step ({num_steps}) or a single number")
    bad = [v for v in values if not 0.0 <= v <= 1.0]  # NaN fails this too
    if bad:
        raise ConfigError(f"s must lie in [0, 1], got {bad[0]}")
    return values


def _noise(shape, generator: Optional[torch.Generator], device, dtype) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def denoise_chunked(denoiser: Denoiser, x: Tensor, sigma: float, cond: Optional[Tensor], chunk: Optional[int]) -> Tensor:
    """D(x) over B sequences, `chunk` of them per call (None: all at once)."""
    b = x.shape[0]
    if b == 0:  # a rank with no rows or columns of its own
        return x.clone()
    step = b if chunk is None else chunk
    outs = []
    for lo in range(0, b, step):
        xs = x[lo : lo + step]
        sig = torch.full((xs.shape[0],), sigma, device=x.device, dtype=x.dtype)
        outs.append(denoiser(xs, sig, None if cond is None else cond[lo : lo + step]))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


class MatrixTerms:
    """The composed Euler direction d = s·(x − D_video(rows))/σ + (1 − s)·(x − D_mv(columns))/σ.

    `rows` and `cols` say which rows and columns this process evaluates (all of them in one process; a share
    of them under torch.distributed, where the shares are summed)."""

    def __init__(self, video: Denoiser, multiview: Denoiser, ref_views: Optional[Tensor], ref_video: Optional[Tensor],
                 chunk: Optional[int], rows: Optional[Tensor] = None, cols: Optional[Tensor] = None):
        self.video, self.multiview, self.chunk = video, multiview, chunk
        self.ref_views, self.ref_video = ref_views, ref_video
        self.rows, self.cols = rows, cols

    def direction(self, x: Tensor, sigma: float, s: float) -> Tensor:
        d = torch.zeros_like(x)
        rows = slice(None) if self.rows is None else self.rows
        cols = slice(None) if self.cols is None else self.cols
        if s > 0:
            xr = x[rows]
            cond = None if self.ref_views is None else self.ref_views[rows]
            d[rows] = s * (xr - denoise_chunked(self.video, xr, sigma, cond, self.chunk)) / sigma
        if s < 1:
            xc = x[:, cols].transpose(0, 1)  # [F', V, ...]: one sequence of views per frame
            cond = None if self.ref_video is None else self.ref_video[cols]
            col = (1 - s) * (xc - denoise_chunked(self.multiview, xc, sigma, cond, self.chunk)) / sigma
            d[:, cols] = d[:, cols] + col.transpose(0, 1)
        return self.reduce(d)

    def reduce(self, d: Tensor) -> Tensor:
        return d


def euler_matrix(terms: MatrixTerms, x: Tensor, sigmas: Tensor, weights: list[float], rollback_steps: int,
                 generator: Optional[torch.Generator], progress: Optional[Callable[[int], None]] = None) -> Tensor:
    """Algorithm 1: Euler steps on the composed score; in the first `rollback_steps` steps the step is taken,
    the result re-noised back towards σ_i with fresh noise of std (σ_i − σ_{i+1}), and the step repeated."""
    for i in range(len(sigmas) - 1):
        hi, lo = float(sigmas[i]), float(sigmas[i + 1])
        repeats = 2 if i < rollback_steps else 1
        for j in range(repeats):
            x_next = x + (lo - hi) * terms.direction(x, hi, weights[i])
            if j < repeats - 1:
                x = x_next + (hi - lo) * _noise(x.shape, generator, x.device, x.dtype)
            else:
                x = x_next
        if progress is not None:
            progress(i)
    return x


def sample_sequence(denoiser: Denoiser, noise: Tensor, cond: Optional[Tensor], sigmas: Tensor) -> Tensor:
    """One sequence [L, C, H, W] from one prior alone (plain Euler EDM) starting from σ_0·`noise` [L, C, H, W]:
    the references of eq. 6."""
    x = float(sigmas[0]) * noise[None]
    c = None if cond is None else cond[None]
    for i in range(len(sigmas) - 1):
        hi, lo = float(sigmas[i]), float(sigmas[i + 1])
        sig = torch.full((1,), hi, device=x.device, dtype=x.dtype)
        x = x + (lo - hi) * (x - denoiser(x, sig, c)) / hi
    return x[0]


def check_matrix_args(views: int, frames: int, shape: Sequence[int], num_steps: int, rollback_steps: int,
                      chunk: Optional[int], ref_views: Optional[Tensor], ref_video: Optional[Tensor],
                      image: Optional[Tensor]) -> tuple[int, ...]:
    for name, v in (("views", views), ("frames", frames)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"shape must be (C, H, W) with positive sizes, got {shape}")
    if isinstance(rollback_steps, bool) or not isinstance(rollback_steps, int) or not 0 <= rollback_steps <= num_steps:
        raise ConfigError(f"rollback_steps must be an integer in [0, num_steps={num_steps}], got {rollback_steps!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"chunk must be a positive integer or None, got {chunk!r}")
    for name, ref, n in (("ref_views", ref_views, views), ("ref_video", ref_video, frames)):
        if ref is not None and tuple(ref.shape) != (n, *shape):
            raise ConfigError(f"{name} must have shape {(n, *shape)}, got {tuple(ref.shape)}")
        if ref is not None and not torch.isfinite(ref).all():
            raise ConfigError(f"{name} holds NaN or infinite values")
    if image is not None and tuple(image.shape) != shape:
        raise ConfigError(f"image must have shape {shape}, got {tuple(image.shape)}")
    return shape


def references(video: Denoiser, multiview: Denoiser, views: int, frames: int, shape: tuple[int, ...],
               ref_views: Optional[Tensor], ref_video: Optional[Tensor], image: Optional[Tensor], sigmas: Tensor,
               generator: Optional[torch.Generator], device, dtype,
               share: Optional[Callable[[Callable[[], Tensor], int, tuple], Tensor]] = None
               ) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """The first row and column of the augmented matrix (eq. 6). A missing one is generated by its prior from
    I₀,₀: the image (image-to-4D), the reference video's last frame (video-to-4D) or the reference view.

    The noise of both is drawn first, in a fixed order, so that every rank of a distributed run draws the same
    numbers; `share(make, owner, shape)` runs the multi-view reference on owner 0 and the video
    reference on owner 1 and hands each result to all (None: this process computes both)."""
    if ref_views is None and ref_video is None and image is None:
        return None, None  # unconditional
    anchor = image if image is not None else (ref_video[-1] if ref_video is not None else ref_views[0])
    anchor = anchor.to(device, dtype)
    noise_views = _noise((views, *shape), generator, device, dtype) if ref_views is None else None
    noise_video = _noise((frames, *shape), generator, device, dtype) if ref_video is None else None
    share = share or (lambda make, owner, shape: make())
    if ref_views is None:
        ref_views = share(lambda: sample_sequence(multiview, noise_views, anchor, sigmas), 0, (views, *shape))
    if ref_video is None:
        ref_video = share(lambda: sample_sequence(video, noise_video, anchor, sigmas), 1, (frames, *shape))
    return ref_views.to(device, dtype), ref_video.to(device, dtype)


def sample_image_matrix(video_denoiser: Denoiser, multiview_denoiser: Denoiser, views: int, frames: int,
                        shape: Sequence[int], ref_views: Optional[Tensor] = None, ref_video: Optional[Tensor] = None,
                        num_steps: int = 50, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0,
                        s: Schedule = 0.5, rollback_steps: int = 5, generator: Optional[torch.Generator] = None,
                        chunk: Optional[int] = None, image: Optional[Tensor] = None, device=None,
                        dtype=torch.float32, progress: Optional[Callable[[int], None]] = None,
                        _shard: Optional[tuple] = None) -> Tensor:
    """Sample the image matrix I[V, F, C, H, W] (eq. 5 with Algorithm 1).

    Row v (view v over all frames) goes to the video prior conditioned on `ref_views[v]`; column f (frame f over
    all views) to the multi-view prior conditioned on `ref_video[f]`. `s` weights the video score, 1 − s the
    multi-view score (one number, or one per step). A missing reference is generated first by the other prior
    (see `references`); `image` is I₀,₀ for image-to-4D. Each step sends all rows to the video prior as one batch
    and all columns to the multi-view prior as another, `chunk` sequences per call if set."""
    shape = check_matrix_args(views, frames, shape, num_steps, rollback_steps, chunk, ref_views, ref_video, image)
    weights = step_weights(s, num_steps)
    sigmas = edm_sigmas(num_steps, sigma_min, sigma_max, rho)
    if device is None:
        device = next((t.device for t in (ref_views, ref_video, image) if t is not None), torch.device("cpu"))
    terms_class, share = _shard if _shard is not None else (MatrixTerms, None)
    ref_views, ref_video = references(video_denoiser, multiview_denoiser, views, frames, shape, ref_views, ref_video,
                                      image, sigmas, generator, device, dtype, share)
    terms = terms_class(video_denoiser, multiview_denoiser, ref_views, ref_video, chunk)
    x = float(sigmas[0]) * _noise((views, frames, *shape), generator, device, dtype)
    return euler_matrix(terms, x, sigmas, weights, rollback_steps, generator, progress)
