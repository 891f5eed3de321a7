"""Helpers every dataset reader shares: frame ids from times, bounds, up direction, point clouds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.scene import DynamicScene, View, count_unique_cameras
from splat4d.errors import ConfigError, DatasetError

SPLITS = ("train", "val", "test")


def frame_ids_from_times(times: list[float], decimals: int = 6) -> tuple[int, list[int]]:
    """Rank of each time among the distinct times -> (number of distinct times, frame id per time)."""
    keys = [round(float(t), decimals) for t in times]
    rank = {k: i for i, k in enumerate(sorted(set(keys)))}
    return len(rank), [rank[k] for k in keys]


def index_times(n: int) -> list[float]:
    """Times of `n` evenly spaced frames: index / (n - 1), or [0.0] for a single frame."""
    return [i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def check_cameras_finite(cams: Cameras, source: Path | str) -> None:
    if not cams.check_finite():
        raise DatasetError(f"non-finite (NaN or Inf) camera matrix in {source}")


def estimate_up(camtoworlds: Tensor) -> tuple[float, float, float]:
    """World up as the mean of the cameras' -y axes (OpenCV y points down).

    Snapped to the nearest signed world axis when within ~25 degrees of it, since most captures are
    levelled to an axis and a snapped up makes orbit paths level; otherwise normalised and rounded.
    """
    up = -camtoworlds[:, :3, 1].double().mean(dim=0)
    norm = float(up.norm())
    if not np.isfinite(norm) or norm < 1e-8:
        return (0.0, 0.0, 1.0)
    up = up / norm
    axis = int(up.abs().argmax())
    if abs(float(up[axis])) > 0.9:
        snapped = [0.0, 0.0, 0.0]
        snapped[axis] = 1.0 if float(up[axis]) > 0 else -1.0
        return tuple(snapped)  # type: ignore[return-value]
    return tuple(round(float(v), 4) for v in up)  # type: ignore[return-value]


def bounds_from(points: Tensor | None, centers: Tensor, forward: Tensor | None = None,
                half_fov_tan: Tensor | None = None) -> Tensor:
    """Axis-aligned box [2, 3] of the scene: of the init points when there are some; else, for cameras that
    look at a common place (`focus_bounds`), a cube there as wide as the views at that distance; else of
    the camera centres."""
    if points is not None and len(points) > 0:
        src = points.float()
        return torch.stack([src.min(dim=0).values, src.max(dim=0).values])
    if forward is not None and half_fov_tan is not None:
        box = focus_bounds(centers, forward, half_fov_tan)
        if box is not None:
            return box
    src = centers.float()
    return torch.stack([src.min(dim=0).values, src.max(dim=0).values])


def focus_bounds(centers: Tensor, forward: Tensor, half_fov_tan: Tensor) -> Tensor | None:
    """A cube around the point nearest (least squares) to every camera's optical axis, with half-width the
    median over cameras of distance x tan(half the narrower field of view): what the views show at the
    place they look at. None when the rig does not converge there (axes near parallel, as in a
    forward-facing capture, or the point behind a camera), where the camera box is the better guess.

    Args:
        centers: [C, 3] camera centres. forward: [C, 3] viewing directions. half_fov_tan: [C].
    """
    if len(centers) < 2:
        return None
    o, d = centers.double(), torch.nn.functional.normalize(forward.double(), dim=-1)
    proj = torch.eye(3, dtype=o.dtype) - d[:, :, None] * d[:, None, :]  # [C, 3, 3] off-axis part
    A, b = proj.sum(0), (proj @ o[:, :, None]).sum(0)[:, 0]
    eig = torch.linalg.eigvalsh(A)
    if float(eig[0]) < 0.05 * float(eig[-1]):  # axes nearly parallel: no single place they converge on
        return None
    focus = torch.linalg.solve(A, b)
    depth = ((focus - o) * d).sum(-1)  # [C] distance along each axis
    if bool((depth <= 0).any()):
        return None
    half = float((depth * half_fov_tan.double()).median())
    return torch.stack([focus - half, focus + half]).float()


def read_point_cloud(path: Path) -> tuple[Tensor, Tensor | None]:
    """x, y, z (and red, green, blue when present) from a binary or ASCII PLY -> ([P, 3], [P, 3] in [0, 1])."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"]
        names = {p.name for p in v.properties}
        xyz = np.stack([np.asarray(v[k], dtype=np.float32) for k in ("x", "y", "z")], axis=1)
    except Exception as e:  # plyfile raises PlyParseError, KeyError, ValueError, ...
        raise DatasetError(f"unreadable point cloud {path}: {e}") from None
    colors = None
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(v[k]) for k in ("red", "green", "blue")], axis=1)
        if np.issubdtype(rgb.dtype, np.integer):
            rgb = rgb.astype(np.float32) / float(np.iinfo(rgb.dtype).max)
        colors = torch.from_numpy(np.clip(rgb.astype(np.float32), 0.0, 1.0))
    if not np.isfinite(xyz).all():
        raise DatasetError(f"non-finite point coordinates in {path}")
    return torch.from_numpy(xyz), colors


def write_point_cloud(path: Path, points: Tensor, colors: Tensor | None = None) -> None:
    """Binary PLY with float x, y, z and uchar red, green, blue (when colours are given)."""
    from plyfile import PlyData, PlyElement

    pts = points.detach().cpu().numpy().astype(np.float32)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    arr = np.empty(len(pts), dtype=fields)
    arr["x"], arr["y"], arr["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        c = np.clip(np.round(colors.detach().cpu().numpy() * 255.0), 0, 255).astype(np.uint8)
        arr["red"], arr["green"], arr["blue"] = c[:, 0], c[:, 1], c[:, 2]
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))


def assign_camera_ids(views: list[View]) -> int:
    """Set `cam_id` of every view from its distinct pose + intrinsics; returns the number of cameras."""
    if not views:
        return 0
    vm = torch.cat([v.camera.viewmats for v in views])
    ks = torch.cat([v.camera.Ks for v in views])
    n, ids = count_unique_cameras(vm, ks)
    for v, i in zip(views, ids):
        v.cam_id = i
    return n


def all_views(splits: dict[str, list[View]]) -> list[View]:
    return [v for views in splits.values() for v in views]


def finish_scene(
    name: str,
    fmt: str,
    splits: dict[str, list[View]],
    *,
    scale: float,
    background,
    num_cameras: int,
    num_frames: int,
    points: Tensor | None = None,
    point_colors: Tensor | None = None,
    up: tuple[float, float, float] | None = None,
    bounds: Tensor | None = None,
) -> DynamicScene:
    """Build the scene, filling bounds (points, else where the cameras look, else camera centres; see
    `bounds_from`) and up (from the cameras) when not given."""
    for s in SPLITS:
        splits.setdefault(s, [])
    views = all_views(splits)
    if not views:
        raise DatasetError(f"dataset {name!r} ({fmt}) has no views")
    c2w = torch.cat([v.camera.camtoworlds for v in views])
    if bounds is None:
        cams = [v.camera for v in views]
        half_tan = torch.cat([torch.minimum(c.Ks[:, 0, 2] / c.Ks[:, 0, 0], c.Ks[:, 1, 2] / c.Ks[:, 1, 1]) for c in cams])
        bounds = bounds_from(points, c2w[:, :3, 3], c2w[:, :3, 2], half_tan)
    if up is None:
        up = estimate_up(c2w)
    return DynamicScene(
        name=name,
        format=fmt,
        splits=splits,
        background=tuple(float(c) for c in background),  # type: ignore[arg-type]
        scale=float(scale),
        bounds=bounds,
        points=points,
        point_colors=point_colors,
        num_cameras=num_cameras,
        num_frames=num_frames,
        up=tuple(float(u) for u in up),  # type: ignore[arg-type]
    )


def image_size(file: Path) -> tuple[int, int]:
    """(width, height) from an image header; DatasetError naming the file when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            return im.size
    except Exception as e:
        raise DatasetError(f"unreadable image {file}: {e}") from None


def check_scale(scale: float) -> float:
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ConfigError(f"scale must be a positive number, got {scale}")
    return scale
