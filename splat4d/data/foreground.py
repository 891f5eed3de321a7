"""Initial points from what the training images show: random depths along the rays of pixels that differ
from the background.

A scene's point cloud may be random (D-NeRF captures ship none, or a uniform cloud over a box) and then
holds almost nothing where the content is: a small object covering 1-5 % of the pixels gets a handful of
points, and a deformation field has nothing to move. Rays through foreground pixels, sampled across the
training views (so across time in a monocular capture), pass through every place something was seen;
points at random depths on them are kept by the static stage where views agree and pruned elsewhere.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

FOREGROUND_THRESHOLD = 0.1
"""A pixel is foreground when some channel differs from the background colour by more than this."""


def foreground_mask(rgb: np.ndarray, background, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """Pixels of a uint8 [H, W, 3] image that differ from `background` (RGB in [0, 1]). -> bool [H, W]"""
    bg = np.asarray(background, dtype=np.float32) * 255.0
    return (np.abs(rgb.astype(np.float32) - bg).max(-1) > threshold * 255.0)


class ForegroundRays(NamedTuple):
    """Rays through the foreground pixels of sampled training views."""

    origins: Tensor  # [R, 3]
    dirs: Tensor  # [R, 3] unit
    colors: Tensor  # [R, 3] in [0, 1]
    times: Tensor  # [R] time of the view each ray comes from
    pixels_per_view: float  # mean foreground pixels of a sampled view


def _even(n: int, k: int) -> np.ndarray:
    """Up to k indices spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


class _Rays:
    """Rays of chosen pixels collected view by view (each view's at most `max_rays`, evenly subsampled)."""

    def __init__(self, max_rays: int):
        self.max_rays = max_rays
        self.parts: list[tuple[Tensor, ...]] = []
        self.pixels = 0

    def add(self, mask: np.ndarray, rgb: np.ndarray, rays: tuple[Tensor, Tensor], t: float) -> None:
        """mask [H, W] of the pixels to take from the uint8 image rgb [H, W, 3]; rays = the camera's
        `pixel_rays()`; t the view's time."""
        ys, xs = np.nonzero(mask)
        self.pixels += len(ys)
        if len(ys) > self.max_rays:
            keep = np.linspace(0, len(ys) - 1, self.max_rays).round().astype(int)
            ys, xs = ys[keep], xs[keep]
        if len(ys) == 0:
            return
        yx = torch.from_numpy(ys), torch.from_numpy(xs)
        self.parts.append((rays[0][0][yx].float(), rays[1][0][yx].float(),
                           torch.from_numpy(rgb[ys, xs].astype(np.float32) / 255.0), torch.full((len(ys),), float(t))))

    def result(self, views: int) -> ForegroundRays:
        empty = (torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0))
        o, d, c, t = (torch.cat([e, *parts]) for e, parts in zip(empty, zip(*self.parts))) if self.parts else empty
        return ForegroundRays(o, d, c, t, self.pixels / max(views, 1))


def foreground_rays(scene, max_views: int = 64, max_rays_per_view: int = 20000,
                    threshold: float = FOREGROUND_THRESHOLD, outside_masks: bool = False) -> ForegroundRays:
    """Rays through the foreground pixels of up to `max_views` training views (evenly spaced): all of them,
    or an even subsample of `max_rays_per_view` of a view with more (memory stays bounded at any
    resolution; `pixels_per_view` counts them all). `outside_masks`: only pixels outside the view's mask
    (what the images show besides the masked subject: a floor, a set; views without a mask give none)."""
    views = scene.split("train")
    pick = _even(len(views), max_views)
    rays = _Rays(max_rays_per_view)
    for i in pick:
        rgb = scene.image_uint8(views[i])
        mask = foreground_mask(rgb, scene.background, threshold)
        if outside_masks:
            alpha = scene.alpha_uint8(views[i])
            mask = mask & (alpha < 128) if alpha is not None else np.zeros_like(mask)
        rays.add(mask, rgb, scene.camera(views[i]).pixel_rays(), views[i].time)
    return rays.result(len(pick))


def dynamic_rays(scene, max_cameras: int = 16, max_frames: int = 16, max_rays_per_view: int = 5000,
                 threshold: float = FOREGROUND_THRESHOLD) -> ForegroundRays | None:
    """Rays through the pixels where a fixed camera sees something change: for each of up to `max_cameras`
    training cameras with at least 3 training frames, the pixels of up to `max_frames` of its frames that
    differ from that camera's per-pixel median over them by more than `threshold` (moving content at the
    frame's time). None when no camera sees 3 frames from one pose (monocular captures: every view is a new
    camera).
    `pixels_per_view` is the mean count of changed pixels per frame."""
    by_cam: dict[int, list] = {}
    for v in scene.split("train"):
        by_cam.setdefault(v.cam_id, []).append(v)
    cams = sorted(c for c, vs in by_cam.items() if len(vs) >= 3)
    rays, frames = _Rays(max_rays_per_view), 0
    for i in _even(len(cams), max_cameras) if cams else []:
        views = sorted(by_cam[cams[i]], key=lambda v: v.time)
        views = [views[j] for j in _even(len(views), max_frames)]
        mats = torch.stack([scene.camera(v).viewmats[0] for v in views])
        if not torch.allclose(mats, mats[:1].expand_as(mats), atol=1e-5):
            continue  # one id, several poses (a moving camera): no fixed background to compare with
        stack = np.stack([scene.image_uint8(v) for v in views])  # [F, H, W, 3] uint8
        median = np.median(stack, axis=0)
        pixel_rays = scene.camera(views[0]).pixel_rays()  # the camera is fixed
        for v, rgb in zip(views, stack):
            rays.add(np.abs(rgb.astype(np.float32) - median).max(-1) > threshold * 255.0, rgb, pixel_rays, v.time)
            frames += 1
    return rays.result(frames) if frames else None


def points_on_rays(rays: ForegroundRays, bounds: Tensor, n: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """n points at uniform depths inside the box `bounds` [2, 3] on rays drawn uniformly from `rays`, with
    the rays' colours and times: (xyz [m, 3], rgb [m, 3], t [m]) float32, m = n, or m = 0 when no ray
    crosses the box."""
    near, far = _box_span(rays.origins, rays.dirs, bounds.float())
    hit = far > near
    if n <= 0 or not bool(hit.any()):
        return torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0)
    o, d, c, near, far = rays.origins[hit], rays.dirs[hit], rays.colors[hit], near[hit], far[hit]
    times = rays.times[hit]
    idx = torch.randint(len(o), (n,), generator=generator, device="cpu")
    u = torch.rand(n, generator=generator, device="cpu")
    depth = near[idx] + u * (far[idx] - near[idx])
    return o[idx] + depth[:, None] * d[idx], c[idx], times[idx]


def _box_span(o: Tensor, d: Tensor, bounds: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays o + s d (s >= 0) through the box bounds [2, 3] (slab test);
    far <= near where a ray misses it."""
    safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t0, t1 = (bounds[0] - o) / safe, (bounds[1] - o) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far
