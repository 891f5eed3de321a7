"""Videos of a model: camera paths and the frames rendered along them.

Paths: "test" (the test views' own cameras and times), "orbit" and "spiral" (around the scene, time sweeping
0 -> 1), "bullet" (an orbit with time frozen) and "fixed" (one training camera, time running). With the
test path a frame can show ground truth | render | error map.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.errors import ConfigError

PATHS = ("test", "orbit", "spiral", "bullet", "fixed")
ERROR_GAIN = 4.0
"""The error map shows mean |render - truth| x this (an error of 0.25 saturates)."""


def path_cameras(scene, kind: str, frames: int, camera: int = 0) -> Cameras:
    """`frames` cameras of the path `kind` (orbit, spiral, bullet or fixed) at the training cameras' mean
    distance, elevation and field of view around the scene centre; "fixed" repeats the `camera`-th
    training camera."""
    train = scene.cameras("train")
    if kind == "fixed":
        ids = sorted({v.cam_id for v in scene.split("train")})
        if not 0 <= camera < len(ids):
            raise ConfigError(f"--camera {camera} is out of range: the training split has {len(ids)} camera(s)")
        first = next(i for i, v in enumerate(scene.split("train")) if v.cam_id == ids[camera])
        return Cameras.cat([train[first]] * frames)
    bounds = scene.bounds.float()
    centre = (bounds[0] + bounds[1]) / 2
    up = torch.tensor(scene.up, dtype=torch.float32)
    up = up / up.norm()
    offs = train.centers.float() - centre
    radius = float(offs.norm(dim=-1).mean())
    elev = float(torch.rad2deg(torch.asin((offs @ up / offs.norm(dim=-1)).clamp(-1, 1))).mean())
    fov = math.degrees(float(train.fov_x.mean()))
    kw = dict(target=centre.tolist(), up=up.tolist(), fov_deg=fov, width=train.width, height=train.height)
    if kind in ("orbit", "bullet"):
        return Cameras.orbit(frames, radius, elevation_deg=elev, **kw)
    if kind == "spiral":
        return Cameras.spiral(frames, radius, elevation_range_deg=(elev - 15, elev + 15), **kw)
    raise ConfigError(f"unknown camera path {kind!r}; choose one of {', '.join(PATHS)}")


def path_times(kind: str, frames: int, time: float | None) -> list[float]:
    """Time of each frame: `time` throughout when given (a bullet path defaults to 0.5), else 0 -> 1."""
    if kind == "bullet" and time is None:
        time = 0.5
    if time is not None:
        return [float(time)] * frames
    return [i / max(frames - 1, 1) for i in range(frames)]


def error_map(render: Tensor, truth: Tensor) -> Tensor:
    """[H, W, 3] heat map of the mean absolute error over channels (black 0, red, yellow, white at
    1 / ERROR_GAIN and above)."""
    e = ((render - truth).abs().mean(-1) * ERROR_GAIN).clamp(0, 1)  # [H, W]
    return torch.stack([(3 * e).clamp(0, 1), (3 * e - 1).clamp(0, 1), (3 * e - 2).clamp(0, 1)], -1)


def test_view_frames(method, scene, time: float | None, side_by_side: bool):
    """Frames of the test path, ordered by camera then time; with `side_by_side`, ground truth | render |
    error map."""
    from splat4d.io.images import side_by_side as sbs
    from splat4d.train.evaluate import eval_split

    device = method.device
    bg = torch.tensor(scene.background, dtype=torch.float32, device=device)
    split = eval_split(scene)
    views = scene.split(split)
    cams = scene.cameras(split)
    for i in sorted(range(len(views)), key=lambda i: (views[i].cam_id, views[i].time)):
        t = views[i].time if time is None else time
        img = method.render(cams[i].to(device), float(t), bg).rgb[0].clamp(0, 1).cpu()
        if side_by_side:
            truth = scene.image(views[i]).float()
            yield sbs(truth, img, error_map(img, truth), gap=2)
        else:
            yield img


@torch.no_grad()
def render_video(method, scene, path: str, out: Path, time: float | None = None, frames: int = 120, fps: int = 24,
                 side_by_side: bool = False, camera: int = 0) -> Path:
    """Render the camera path `path` (see the module docstring) into an mp4."""
    from splat4d.io.video import write_video

    if side_by_side and path != "test":
        raise ConfigError("--side-by-side needs --path test (other paths have no ground truth)")
    if path == "test":
        return write_video(out, list(test_view_frames(method, scene, time, side_by_side)), fps=fps)
    cams = path_cameras(scene, path, frames, camera).to(method.device)
    bg = torch.tensor(scene.background, dtype=torch.float32, device=method.device)
    images = [method.render(cams[i], t, bg).rgb[0].clamp(0, 1).cpu()
              for i, t in enumerate(path_times(path, len(cams), time))]
    return write_video(out, images, fps=fps)

