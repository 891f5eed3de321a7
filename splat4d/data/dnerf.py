"""D-NeRF / Blender (NeRF-synthetic) layout.

    transforms_train.json   {"camera_angle_x": ..., "frames": [{"file_path": "./train/r_000",
    transforms_val.json       "transform_matrix": 4x4 OpenGL camera-to-world, "time": t}, ...]}
    transforms_test.json    (val/test optional: a missing file is an empty split)
    train/r_000.png ...     RGBA or RGB images (a `file_path` without extension gets ".png")
    fused.ply | points3d.ply  optional initial point cloud (x, y, z [, red, green, blue])

Intrinsics come from `fl_x`, `fl_y`, `cx`, `cy`, `w`, `h` (per frame, else top level) when present,
else focal = 0.5 * W / tan(0.5 * camera_angle_x) (and camera_angle_y for fy when given) with W, H
read from the first image. Times given outside [0, 1] (e.g. frame numbers) are rescaled to [0, 1];
missing times are index / (n - 1) within the split. World up is +z as in Blender.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from splat4d.cameras import Cameras
from splat4d.data.common import (
    SPLITS,
    assign_camera_ids,
    check_cameras_finite,
    check_scale,
    finish_scene,
    frame_ids_from_times,
    image_size,
    index_times,
    read_point_cloud,
)
from splat4d.data.scene import DynamicScene, FileImage, View
from splat4d.errors import DatasetError

NAME = "dnerf"
LAYOUT = (
    "dnerf: transforms_train.json (+ optional transforms_val.json, transforms_test.json) with frames of "
    "file_path/transform_matrix/time, images such as train/r_000.png, optional fused.ply or points3d.ply"
)
DEFAULT_BACKGROUND = "white"
"""What `background="auto"` resolves to: D-NeRF captures are trained and scored on white in published
evaluations (D-NeRF, 4DGaussians), so numbers compare only on white."""
POINT_FILES = ("fused.ply", "points3d.ply", "points3D.ply")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".exr", ".webp", ".bmp", ".tif", ".tiff"}
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")


def detect(path: Path) -> bool:
    path = Path(path)
    return any((path / f"transforms_{s}.json").is_file() for s in SPLITS)


def load(path: Path, scale: float = 1.0, background=(0.0, 0.0, 0.0)) -> DynamicScene:
    """Read a D-NeRF/Blender folder into a DynamicScene (images lazy, cameras at full resolution)."""
    path = Path(path)
    scale = check_scale(scale)
    if not (path / "transforms_train.json").is_file():
        raise DatasetError(f"missing {path / 'transforms_train.json'}; expected {LAYOUT}")

    splits: dict[str, list[View]] = {}
    size_cache: dict[str, tuple[int, int]] = {}
    for split in SPLITS:
        file = path / f"transforms_{split}.json"
        splits[split] = _read_split(path, file, size_cache) if file.is_file() else []

    views = [v for s in SPLITS for v in splits[s]]
    _normalise_times(views)
    num_frames, frame_ids = frame_ids_from_times([v.time for v in views])
    for v, f in zip(views, frame_ids):
        v.frame_id = f
    num_cameras = assign_camera_ids(views)

    points = colors = None
    for name in POINT_FILES:
        if (path / name).is_file():
            points, colors = read_point_cloud(path / name)
            break
    return finish_scene(
        path.resolve().name, NAME, splits, scale=scale, background=background, num_cameras=num_cameras,
        num_frames=num_frames, points=points, point_colors=colors, up=(0.0, 0.0, 1.0),
    )


def _read_split(root: Path, file: Path, size_cache: dict[str, tuple[int, int]]) -> list[View]:
    try:
        meta = json.loads(file.read_text())
        frames = meta["frames"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"unreadable {file}: {type(e).__name__}: {e}") from None
    n = len(frames)
    default_times = index_times(n)
    views = []
    for i, fr in enumerate(frames):
        try:
            image = _image_path(root, fr["file_path"])
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"bad frame {i} in {file}: {type(e).__name__}: {e}") from None
        if c2w.shape not in ((4, 4), (3, 4)):
            raise DatasetError(f"bad transform_matrix shape {c2w.shape} in frame {i} of {file}")
        fx, fy, cx, cy, w, h = _intrinsics(meta, fr, image, file, size_cache)
        cam = Cameras.from_opengl_c2w(c2w, fx, fy, cx, cy, w, h)
        check_cameras_finite(cam, file)
        try:
            t = float(fr.get("time", default_times[i]))
        except (TypeError, ValueError):
            t = math.nan
        if not math.isfinite(t):
            raise DatasetError(f"bad time {fr.get('time')!r} in frame {i} of {file}")
        views.append(View(camera=cam, time=t, cam_id=0, frame_id=0, image=FileImage(image)))
    return views


def _image_path(root: Path, file_path: str) -> Path:
    p = root / file_path
    if p.suffix.lower() not in _IMAGE_SUFFIXES:
        p = p.with_name(p.name + ".png")
    return p


def _intrinsics(meta: dict, frame: dict, image: Path, file: Path, size_cache: dict) -> tuple:
    get = {k: frame.get(k, meta.get(k)) for k in _INTRINSIC_KEYS}
    w, h = get["w"], get["h"]
    if w is None or h is None:
        if "size" not in size_cache:
            size_cache["size"] = image_size(image)
        w0, h0 = size_cache["size"]
        w, h = w if w is not None else w0, h if h is not None else h0
    w, h = int(w), int(h)
    if get["fl_x"] is not None:
        fx = float(get["fl_x"])
        fy = float(get["fl_y"]) if get["fl_y"] is not None else fx
    elif get["camera_angle_x"] is not None:
        fx = 0.5 * w / math.tan(0.5 * float(get["camera_angle_x"]))
        ay = get["camera_angle_y"]
        fy = 0.5 * h / math.tan(0.5 * float(ay)) if ay is not None else fx
    else:
        raise DatasetError(f"{file} gives neither fl_x nor camera_angle_x")
    cx = float(get["cx"]) if get["cx"] is not None else w / 2
    cy = float(get["cy"]) if get["cy"] is not None else h / 2
    return fx, fy, cx, cy, w, h


def _normalise_times(views: list[View]) -> None:
    if not views:
        return
    times = [v.time for v in views]
    lo, hi = min(times), max(times)
    if lo >= 0.0 and hi <= 1.0:
        return
    for v in views:
        v.time = (v.time - lo) / (hi - lo) if hi > lo else 0.0
