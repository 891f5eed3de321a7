"""EasyVolcap layout (the 4K4D code base): OpenCV FileStorage cameras + per-camera image folders.

    intri.yml   names, K_<cam> (3x3), D_<cam> or dist_<cam> (1x5, ignored), H_<cam>, W_<cam>
    extri.yml   Rot_<cam> (3x3) or R_<cam> (Rodrigues 3x1), T_<cam> (3x1): world -> camera
    images/<cam>/<frame>.jpg|png
    masks/<cam>/<frame>.png|jpg        optional foreground masks
    splat4d.json                       optional (written by `write_easyvolcap`): per view split, time,
                                       ids and files, plus name, bounds, up, background
    points.ply                         optional initial point cloud

Without splat4d.json, frame i of the F distinct frame names has time i / (F - 1), and the split is by
camera: the last camera in `names` order is the test camera (all cameras train when there is only
one). `load(..., test_cams=[...])` (names or indices into `names`) chooses the test cameras instead,
also over splat4d.json. There is no val split unless splat4d.json has one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.data.common import (
    check_cameras_finite,
    check_scale,
    finish_scene,
    index_times,
    read_point_cloud,
    write_point_cloud,
)
from splat4d.data.opencv_yaml import (
    matrix_to_rodrigues,
    read_opencv_yaml,
    rodrigues_to_matrix,
    write_opencv_yaml,
)
from splat4d.data.scene import DynamicScene, FileImage, View
from splat4d.errors import ConfigError, DatasetError

NAME = "easyvolcap"
LAYOUT = (
    "easyvolcap: intri.yml and extri.yml (OpenCV YAML with names, K_/H_/W_<cam>, Rot_ or R_ and T_<cam>), "
    "images/<cam>/<frame>.jpg|png, optional masks/<cam>/<frame>.png"
)
META_FILE = "splat4d.json"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def detect(path: Path) -> bool:
    path = Path(path)
    return (path / "intri.yml").is_file() and (path / "extri.yml").is_file()


def load(
    path: Path,
    scale: float = 1.0,
    background=(0.0, 0.0, 0.0),
    test_cams: list[str | int] | None = None,
) -> DynamicScene:
    """Read an EasyVolcap folder into a DynamicScene (split by camera; see the module docstring)."""
    path = Path(path)
    scale = check_scale(scale)
    for f in ("intri.yml", "extri.yml"):
        if not (path / f).is_file():
            raise DatasetError(f"missing {path / f}; expected {LAYOUT}")
    intri, extri = read_opencv_yaml(path / "intri.yml"), read_opencv_yaml(path / "extri.yml")
    names = [str(n) for n in (intri.get("names") or extri.get("names") or _image_dirs(path))]
    if not names:
        raise DatasetError(f"no camera names in {path / 'intri.yml'} and no folders under {path / 'images'}")
    cams = {n: _camera(path, intri, extri, n) for n in names}

    meta = _read_meta(path)
    if meta is not None:
        splits, num_frames = _views_from_meta(path, meta, cams, names)
    else:
        splits, num_frames = _views_from_folders(path, cams, names)
    if test_cams is not None:
        splits = _split_by_cameras(splits, _test_names(test_cams, names), names)

    points = colors = None
    if (path / "points.ply").is_file():
        points, colors = read_point_cloud(path / "points.ply")
    extra = {}
    if meta is not None:
        if meta.get("bounds") is not None:
            extra["bounds"] = torch.tensor(meta["bounds"], dtype=torch.float32).reshape(2, 3)
        if meta.get("up") is not None:
            extra["up"] = tuple(float(u) for u in meta["up"])
    name = str(meta.get("name")) if meta and meta.get("name") else path.resolve().name
    return finish_scene(
        name, NAME, splits, scale=scale, background=background, num_cameras=len(names),
        num_frames=num_frames, points=points, point_colors=colors, **extra,
    )


# -------------------------------------------------------------------- cameras
def _camera(path: Path, intri: dict, extri: dict, cam: str) -> Cameras:
    ifile, efile = path / "intri.yml", path / "extri.yml"
    K = intri.get(f"K_{cam}")
    if not isinstance(K, np.ndarray) or K.shape != (3, 3):
        raise DatasetError(f"{ifile} has no 3x3 K_{cam}")
    if not np.isfinite(K).all():
        raise DatasetError(f"non-finite (NaN or Inf) camera matrix K_{cam} in {ifile}")
    D = intri.get(f"D_{cam}", intri.get(f"dist_{cam}"))
    if isinstance(D, np.ndarray) and np.abs(np.nan_to_num(D)).max(initial=0.0) > 0:
        warnings.warn(f"lens distortion D_{cam} in {ifile} is ignored (images are used as they are)")
    if f"Rot_{cam}" in extri:
        R = extri[f"Rot_{cam}"]
    elif f"R_{cam}" in extri:
        R = rodrigues_to_matrix(extri[f"R_{cam}"]) if np.isfinite(extri[f"R_{cam}"]).all() else np.full((3, 3), np.nan)
    else:
        raise DatasetError(f"{efile} has neither Rot_{cam} nor R_{cam}")
    T = extri.get(f"T_{cam}")
    if not isinstance(R, np.ndarray) or R.shape != (3, 3) or not isinstance(T, np.ndarray) or T.size != 3:
        raise DatasetError(f"{efile} has a malformed rotation or T_{cam} for camera {cam}")
    viewmat = np.eye(4)
    viewmat[:3, :3], viewmat[:3, 3] = R, T.reshape(3)
    if not np.isfinite(viewmat).all():
        raise DatasetError(f"non-finite (NaN or Inf) camera matrix for camera {cam} in {efile}")
    w, h = _int_or_none(intri.get(f"W_{cam}")), _int_or_none(intri.get(f"H_{cam}"))
    if w is None or h is None or w <= 0 or h <= 0:
        w, h = _first_image_size(path, cam, ifile)
    out = Cameras(torch.from_numpy(viewmat).float(), torch.from_numpy(K).float(), w, h)
    check_cameras_finite(out, efile)
    return out


def _int_or_none(v) -> int | None:
    try:
        return int(round(float(v)))
    except (TypeError, ValueError):
        return None


def _first_image_size(path: Path, cam: str, ifile: Path) -> tuple[int, int]:
    from PIL import Image

    files = _frame_files(path / "images" / cam)
    if not files:
        raise DatasetError(f"{ifile} gives no H_{cam}/W_{cam} and {path / 'images' / cam} has no images")
    try:
        with Image.open(files[0]) as im:
            return im.size
    except Exception as e:
        raise DatasetError(f"unreadable image {files[0]}: {e}") from None


# ---------------------------------------------------------------------- views
def _image_dirs(path: Path) -> list[str]:
    d = path / "images"
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _frame_files(d: Path) -> list[Path]:
    if not d.is_dir():
        return []
    files = [f for f in d.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file()]
    return sorted(files, key=_frame_key)


def _frame_key(f: Path) -> tuple:
    return (0, int(f.stem), f.name) if f.stem.isdigit() else (1, 0, f.name)


def _mask_for(path: Path, cam: str, stem: str) -> Path | None:
    for suffix in (".png", ".jpg", ".jpeg"):
        m = path / "masks" / cam / f"{stem}{suffix}"
        if m.is_file():
            return m
    return None


def _views_from_folders(path: Path, cams: dict[str, Cameras], names: list[str]) -> tuple[dict, int]:
    files = {}
    for cam in names:
        files[cam] = _frame_files(path / "images" / cam)
        if not files[cam]:
            raise DatasetError(f"no images in {path / 'images' / cam}; expected {LAYOUT}")
    stems = sorted({f.stem for fs in files.values() for f in fs}, key=lambda s: _frame_key(Path(s)))
    frame_of = {s: i for i, s in enumerate(stems)}
    times = index_times(len(stems))
    test = {names[-1]} if len(names) > 1 else set()
    splits: dict[str, list[View]] = {"train": [], "val": [], "test": []}
    for cam_id, cam in enumerate(names):
        for f in files[cam]:
            i = frame_of[f.stem]
            mask = _mask_for(path, cam, f.stem)
            view = View(
                camera=cams[cam], time=times[i], cam_id=cam_id, frame_id=i, image=FileImage(f),
                mask=FileImage(mask) if mask is not None else None,
            )
            splits["test" if cam in test else "train"].append(view)
    return splits, len(stems)


def recorded_background(path: Path) -> str | None:
    """The background colour `write_easyvolcap` recorded in splat4d.json ("R,G,B" floats), else None.
    The images keep their alpha, so a scene written from a D-NeRF capture composites on the white it
    was written with when the background is "auto"."""
    meta = _read_meta(Path(path))
    bg = meta.get("background") if meta else None
    if not isinstance(bg, list) or len(bg) != 3 or not all(isinstance(c, (int, float)) for c in bg):
        return None
    return ",".join(repr(float(c)) for c in bg)  # always with a decimal point: 0-1 floats


def _read_meta(path: Path) -> dict | None:
    file = path / META_FILE
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text())
        if not isinstance(meta.get("views"), list):
            raise ValueError("no 'views' list")
        return meta
    except (OSError, ValueError, AttributeError) as e:
        raise DatasetError(f"unreadable {file}: {e}") from None


def _views_from_meta(path: Path, meta: dict, cams: dict[str, Cameras], names: list[str]) -> tuple[dict, int]:
    file = path / META_FILE
    splits: dict[str, list[View]] = {"train": [], "val": [], "test": []}
    for i, e in enumerate(meta["views"]):
        try:
            cam = str(e["cam"])
            depth = np.load(path / e["depth"]) if e.get("depth") else None
            view = View(
                camera=cams[cam], time=float(e["time"]), cam_id=names.index(cam), frame_id=int(e["frame_id"]),
                image=FileImage(path / e["image"]), mask=FileImage(path / e["mask"]) if e.get("mask") else None,
                depth=depth,
            )
            splits.setdefault(str(e["split"]), []).append(view)
        except (KeyError, TypeError, ValueError, OSError) as err:
            raise DatasetError(f"bad view {i} in {file}: {type(err).__name__}: {err}") from None
    n = meta.get("num_frames")
    num_frames = int(n) if n is not None else len({v.frame_id for vs in splits.values() for v in vs})
    return splits, num_frames


def _test_names(test_cams: list[str | int], names: list[str]) -> set[str]:
    out = set()
    for c in test_cams:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not -len(names) <= int(c) < len(names):
                raise ConfigError(f"test camera index {c} out of range for {len(names)} cameras")
            out.add(names[int(c)])
        elif str(c) in names:
            out.add(str(c))
        else:
            raise ConfigError(f"unknown test camera {c!r}; cameras are {names}")
    return out


def _split_by_cameras(splits: dict[str, list[View]], test: set[str], names: list[str]) -> dict[str, list[View]]:
    seen, out = set(), {"train": [], "val": [], "test": []}
    for views in splits.values():
        for v in views:
            key = (v.cam_id, v.frame_id)
            if key in seen:
                continue
            seen.add(key)
            out["test" if names[v.cam_id] in test else "train"].append(v)
    return out


# --------------------------------------------------------------------- writer
def write_easyvolcap(scene: DynamicScene, out: Path) -> Path:
    """Write any DynamicScene in this layout, at the scene's resolution (its `scale` applied).

    Raw image pixels are written as PNG (RGBA stays RGBA), masks as PNG (a view's mask, else the
    image's alpha), exact depths as .npy when the scene has them at scale 1, cameras to intri.yml /
    extri.yml and every view's split, time and ids to splat4d.json, so `load(out)` gives back the same
    cameras, images and times.
    """
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cams: dict[int, Cameras] = {}
    entries, written = [], {}
    for split, views in scene.splits.items():
        for v in views:
            cam = scene.camera(v)
            if v.cam_id in cams:
                ref = cams[v.cam_id]
                same = (ref.width, ref.height) == (cam.width, cam.height) and torch.allclose(
                    ref.viewmats, cam.viewmats, atol=1e-6) and torch.allclose(ref.Ks, cam.Ks, atol=1e-6)
                if not same:
                    raise DatasetError(f"views of camera {v.cam_id} in scene {scene.name!r} have different cameras")
            else:
                cams[v.cam_id] = cam
            name, frame = f"{v.cam_id:02d}", f"{v.frame_id:06d}"
            key = (name, frame)
            if key not in written:
                written[key] = _write_view(scene, v, out, name, frame, Image)
            image, mask, depth = written[key]
            entries.append({
                "split": split, "cam": name, "frame": frame, "cam_id": v.cam_id, "frame_id": v.frame_id,
                "time": v.time, "image": image, "mask": mask, "depth": depth,
            })

    names = [f"{c:02d}" for c in sorted(cams)]
    intri: dict = {"names": names}
    extri: dict = {"names": names}
    for c in sorted(cams):
        n, cam = f"{c:02d}", cams[c]
        vm = cam.viewmats[0].double().numpy()
        intri[f"K_{n}"] = cam.Ks[0].double().numpy()
        intri[f"H_{n}"], intri[f"W_{n}"] = cam.height, cam.width
        intri[f"D_{n}"] = np.zeros((1, 5))
        extri[f"R_{n}"] = matrix_to_rodrigues(vm[:3, :3])
        extri[f"Rot_{n}"] = vm[:3, :3]
        extri[f"T_{n}"] = vm[:3, 3:4]
    write_opencv_yaml(out / "intri.yml", intri)
    write_opencv_yaml(out / "extri.yml", extri)
    if scene.points is not None:
        write_point_cloud(out / "points.ply", scene.points, scene.point_colors)
    meta = {
        "version": 1, "name": scene.name, "source_format": scene.format, "background": list(scene.background),
        "num_frames": scene.num_frames, "up": list(scene.up), "bounds": scene.bounds.tolist(), "views": entries,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    return out


def _write_view(scene: DynamicScene, v: View, out: Path, cam: str, frame: str, Image) -> tuple:
    arr = scene._read_resized(v.image, v)
    img_rel = f"images/{cam}/{frame}.png"
    _save_png(out / img_rel, arr, Image)
    mask_rel = None
    if v.mask is not None:
        mask = scene._read_resized(v.mask, v)
    elif arr.shape[-1] == 4:
        mask = arr[..., 3:]
    else:
        mask = None
    if mask is not None:
        mask_rel = f"masks/{cam}/{frame}.png"
        _save_png(out / mask_rel, mask, Image)
    depth_rel = None
    if v.depth is not None and scene.scale == 1.0:
        depth_rel = f"depths/{cam}/{frame}.npy"
        (out / depth_rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(out / depth_rel, np.asarray(v.depth))
    return img_rel, mask_rel, depth_rel


def _save_png(file: Path, arr: np.ndarray, Image) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(arr.astype(np.uint8))
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(file)
