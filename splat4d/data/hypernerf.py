"""HyperNeRF / Nerfies layout.

    dataset.json      {"ids": [...], "train_ids": [...], "val_ids": [...]}
    metadata.json     {id: {"warp_id": time index, "appearance_id": ..., "camera_id": ...}}
    scene.json        {"scale": s, "center": [x, y, z], "near": n, "far": f}   (optional)
    camera/<id>.json  orientation (world->camera rotation, OpenCV axes), position (camera centre),
                      focal_length, principal_point, image_size [w, h] (of rgb/1x), pixel_aspect_ratio,
                      skew, radial_distortion, tangential_distortion
    rgb/<s>x/<id>.png images downscaled by s (1x, 2x, 4x, ...)
    points.npy        optional initial points [P, 3]

As HyperNeRF does, camera positions and points are normalised by scene.json: (x - center) * scale;
`scene.near_far` keeps near/far (already in those units). val_ids become the "test" split.
Time = warp_id / max(warp_id); camera ids are distinct poses (count_unique_cameras), because
`camera_id` names a device, not a pose. fy = focal_length * pixel_aspect_ratio and skew goes to
K[0, 1] (renderers that ignore skew see the usual fx, fy, cx, cy); lens distortion is ignored, with
a warning when non-zero (as in 4DGaussians and most splatting code).

Resolution: `rgb/<s>x` with the largest s not below the requested scale (scale 0.5 -> rgb/2x) is
read, the view cameras describe those images (K scaled by 1/s as HyperNeRF does) and the scene's
own `scale` is what remains relative to them (1.0 when the folder matches exactly).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.data.common import (
    assign_camera_ids,
    check_scale,
    finish_scene,
    frame_ids_from_times,
)
from splat4d.data.scene import DynamicScene, FileImage, View
from splat4d.errors import DatasetError

NAME = "hypernerf"
LAYOUT = (
    "hypernerf: dataset.json (ids, train_ids, val_ids), metadata.json, scene.json, camera/<id>.json, "
    "rgb/1x/<id>.png (and rgb/2x, rgb/4x, ...), optional points.npy"
)
_FOLDER_RE = re.compile(r"^(\d+)x$")


def detect(path: Path) -> bool:
    path = Path(path)
    return (path / "dataset.json").is_file() and (path / "camera").is_dir()


def load(path: Path, scale: float = 1.0, background=(0.0, 0.0, 0.0)) -> DynamicScene:
    """Read a HyperNeRF/Nerfies folder into a DynamicScene (train_ids -> train, val_ids -> test)."""
    path = Path(path)
    scale = check_scale(scale)
    dataset = _read_json(path / "dataset.json", required=True)
    meta = _read_json(path / "metadata.json", required=False) or {}
    scene_json = _read_json(path / "scene.json", required=False) or {}
    try:
        ids = [str(i) for i in dataset["ids"]]
        train_ids = [str(i) for i in dataset.get("train_ids", ids)]
        val_ids = [str(i) for i in dataset.get("val_ids", [])]
        s = float(scene_json.get("scale", 1.0))
        center = np.asarray(scene_json.get("center", [0.0, 0.0, 0.0]), dtype=np.float64).reshape(3)
        near, far = scene_json.get("near"), scene_json.get("far")
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"bad dataset.json or scene.json in {path}: {type(e).__name__}: {e}") from None

    factor, folder = _pick_folder(path, scale)
    used = list(dict.fromkeys(train_ids + val_ids))
    cams: dict[str, Cameras] = {}
    distorted = 0.0
    for id_ in used:
        cam, dist = _read_camera(path / "camera" / f"{id_}.json", center, s)
        cams[id_] = cam
        distorted = max(distorted, dist)
    if distorted > 0:
        warnings.warn(f"HyperNeRF lens distortion in {path / 'camera'} is ignored (max |coefficient| {distorted:.3g})")

    size = _folder_image_size(folder, used[0]) if used and factor != 1 else None
    warp = {}
    for i, id_ in enumerate(used):
        try:
            warp[id_] = int(meta[id_]["warp_id"]) if id_ in meta else ids.index(id_) if id_ in ids else i
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"bad metadata.json entry for {id_!r} in {path}: {e}") from None
    max_warp = max(warp.values(), default=0)

    splits: dict[str, list[View]] = {"train": [], "val": [], "test": []}
    for split, split_ids in (("train", train_ids), ("test", val_ids)):
        for id_ in split_ids:
            cam = _scale_camera(cams[id_], factor, size)
            t = warp[id_] / max_warp if max_warp > 0 else 0.0
            splits[split].append(View(camera=cam, time=t, cam_id=0, frame_id=0, image=FileImage(folder / f"{id_}.png")))
    views = splits["train"] + splits["test"]
    num_frames, frame_ids = frame_ids_from_times([v.time for v in views])
    for v, f in zip(views, frame_ids):
        v.frame_id = f
    num_cameras = assign_camera_ids(views)

    points = None
    if (path / "points.npy").is_file():
        try:
            pts = np.load(path / "points.npy").astype(np.float64).reshape(-1, 3)
        except Exception as e:
            raise DatasetError(f"unreadable {path / 'points.npy'}: {e}") from None
        if not np.isfinite(pts).all():
            raise DatasetError(f"non-finite points in {path / 'points.npy'}")
        points = torch.from_numpy((pts - center) * s).float()

    scene = finish_scene(
        path.resolve().name, NAME, splits, scale=scale * factor, background=background,
        num_cameras=num_cameras, num_frames=num_frames, points=points,
    )
    if near is not None and far is not None:
        scene.near_far = torch.tensor([[float(near), float(far)]]).expand(max(num_cameras, 1), 2).clone()
    return scene


def _read_json(file: Path, required: bool):
    if not file.is_file():
        if required:
            raise DatasetError(f"missing {file}; expected {LAYOUT}")
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"unreadable {file}: {e}") from None


def _read_camera(file: Path, center: np.ndarray, scene_scale: float) -> tuple[Cameras, float]:
    """camera/<id>.json -> (camera at rgb/1x resolution in normalised world units, max |distortion|)."""
    c = _read_json(file, required=False)
    if c is None:
        raise DatasetError(f"missing camera file {file}")
    try:
        R = np.asarray(c["orientation"], dtype=np.float64).reshape(3, 3)
        pos = (np.asarray(c["position"], dtype=np.float64).reshape(3) - center) * scene_scale
        f = float(c["focal_length"])
        cx, cy = (float(v) for v in c["principal_point"])
        w, h = (int(v) for v in c["image_size"])
        aspect = float(c.get("pixel_aspect_ratio", 1.0))
        skew = float(c.get("skew", 0.0))
        dist = [float(v) for v in list(c.get("radial_distortion", [])) + list(c.get("tangential_distortion", []))]
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"bad camera file {file}: {type(e).__name__}: {e}") from None
    vals = np.concatenate([R.ravel(), pos, [f, cx, cy, aspect, skew]])
    if not np.isfinite(vals).all():
        raise DatasetError(f"non-finite (NaN or Inf) camera matrix in {file}")
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ pos
    K = torch.tensor([[f, skew, cx], [0.0, f * aspect, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    cam = Cameras(torch.from_numpy(viewmat).float(), K, w, h)
    return cam, max((abs(d) for d in dist), default=0.0)


def _pick_folder(path: Path, scale: float) -> tuple[int, Path]:
    """rgb/<s>x with the largest s whose resolution is not below the requested one (else the finest)."""
    rgb = path / "rgb"
    factors = sorted(
        int(m.group(1)) for p in (rgb.iterdir() if rgb.is_dir() else []) if p.is_dir() and (m := _FOLDER_RE.match(p.name))
    )
    if not factors:
        raise DatasetError(f"no image folders rgb/1x, rgb/2x, ... in {path}; expected {LAYOUT}")
    ok = [f for f in factors if f <= 1.0 / scale + 1e-6]
    factor = ok[-1] if ok else factors[0]
    return factor, rgb / f"{factor}x"


def _folder_image_size(folder: Path, id_: str) -> tuple[int, int] | None:
    """Size of the downscaled images (None when unreadable: check_scene / scene.image will say so)."""
    from PIL import Image

    try:
        with Image.open(folder / f"{id_}.png") as im:
            return im.size
    except Exception:
        return None


def _scale_camera(cam: Cameras, factor: int, size: tuple[int, int] | None) -> Cameras:
    """The rgb/1x camera for images downscaled by `factor` (HyperNeRF's Camera.scale(1 / factor))."""
    if factor == 1:
        return cam
    w, h = size if size is not None else (round(cam.width / factor), round(cam.height / factor))
    Ks = cam.Ks.clone()
    Ks[:, :2, :] /= factor
    return Cameras(cam.viewmats, Ks, w, h)
