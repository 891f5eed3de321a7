"""Tiny on-disk datasets for the reader tests, each built from known OpenCV cameras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from splat4d.cameras import Cameras

W, H = 8, 6


def known_cameras(n: int = 3, width: int = W, height: int = H, fov_deg: float = 60.0) -> Cameras:
    eyes = [[4.0, 0.5, 1.0], [0.2, 4.0, 1.5], [-3.0, -3.0, 2.0], [2.0, -3.5, 0.5]][:n]
    return Cameras.look_at(eyes, (0.1, -0.2, 0.3), up=(0, 0, 1), fov_deg=fov_deg, width=width, height=height)


def image(seed: int, channels: int = 3, width: int = W, height: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr).save(path)


def save_ply(path: Path, pts: np.ndarray, colors: np.ndarray | None = None, text: bool = False) -> None:
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")] + ([("red", "u1"), ("green", "u1"), ("blue", "u1")] if colors is not None else [])
    arr = np.empty(len(pts), dtype=fields)
    for i, k in enumerate("xyz"):
        arr[k] = pts[:, i]
    if colors is not None:
        for i, k in enumerate(("red", "green", "blue")):
            arr[k] = colors[:, i]
    PlyData([PlyElement.describe(arr, "vertex")], text=text).write(str(path))


def write_dnerf(
    root: Path,
    cams: Cameras,
    splits: dict[str, list[tuple[int, float]]],
    channels: int = 3,
    intrinsics: str = "per_frame",
) -> dict[tuple[str, int], np.ndarray]:
    """transforms_<split>.json + <split>/r_<i>.png for (camera index, time) pairs; returns the images."""
    c2w = cams.to_opengl_c2w()
    written = {}
    for split, pairs in splits.items():
        frames = []
        for i, (c, t) in enumerate(pairs):
            arr = image(1000 * len(split) + i, channels)
            save_png(root / split / f"r_{i:03d}.png", arr)
            written[(split, i)] = arr
            fr = {"file_path": f"./{split}/r_{i:03d}", "time": t, "transform_matrix": c2w[c].tolist()}
            if intrinsics == "per_frame":
                K = cams.Ks[c]
                fr.update(fl_x=float(K[0, 0]), fl_y=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]), w=W, h=H)
            frames.append(fr)
        meta = {"camera_angle_x": float(cams.fov_x[0]), "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return written


def llff_rows(cams: Cameras, near: float = 0.5, far: float = 9.0) -> np.ndarray:
    """poses_bounds.npy rows for cameras sharing f = fx = fy and a centred principal point."""
    c2w = cams.to_opengl_c2w().numpy()  # columns: right, up, back, centre
    rows = []
    for m in c2w:
        block = np.stack([-m[:3, 1], m[:3, 0], m[:3, 2], m[:3, 3]], axis=1)  # (down, right, back, t)
        hwf = np.array([[cams.height], [cams.width], [float(cams.Ks[0, 0, 0])]])
        rows.append(np.concatenate([np.concatenate([block, hwf], axis=1).ravel(), [near, far]]))
    return np.stack(rows)


def flat_colour(cam: int, frame: int) -> np.ndarray:
    return np.array([40 + 60 * cam, 200 - 50 * frame, 90 + 30 * frame], dtype=np.uint8)


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=10, quality=10, macro_block_size=1, ffmpeg_log_level="error")
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()


def write_neu3d(root: Path, cams: Cameras, num_frames: int, mode: str = "video") -> None:
    """mode: "video" (camXX.mp4), "frames" (camXX/images/NNNN.png) or "flat" (camXX/NNNN.png)."""
    np.save(root / "poses_bounds.npy", llff_rows(cams))
    for c in range(len(cams)):
        frames = [np.broadcast_to(flat_colour(c, f), (cams.height, cams.width, 3)).copy() for f in range(num_frames)]
        if mode == "video":
            write_video(root / f"cam{c:02d}.mp4", frames)
        else:
            d = root / f"cam{c:02d}" / ("images" if mode == "frames" else "")
            for f, arr in enumerate(frames):
                save_png(d / f"{f:04d}.png", arr)


def write_hypernerf(
    root: Path,
    cams: Cameras,
    warp_ids: list[int],
    train: list[int],
    val: list[int],
    scene_scale: float = 0.5,
    center=(1.0, -2.0, 0.5),
    factors=(1, 2),
) -> None:
    """Views i = (camera i % C, warp_ids[i]); positions stored un-normalised as HyperNeRF does."""
    center = np.asarray(center)
    ids = [f"v{i:03d}" for i in range(len(warp_ids))]
    (root / "camera").mkdir(parents=True)
    for i, id_ in enumerate(ids):
        c = i % len(cams)
        vm = cams.viewmats[c].double().numpy()
        K = cams.Ks[c].double().numpy()
        pos = cams.centers[c].double().numpy() / scene_scale + center
        cam = {
            "orientation": vm[:3, :3].tolist(), "position": pos.tolist(), "focal_length": K[0, 0],
            "principal_point": [K[0, 2], K[1, 2]], "image_size": [cams.width, cams.height],
            "pixel_aspect_ratio": K[1, 1] / K[0, 0], "skew": 0.0,
            "radial_distortion": [0.0, 0.0, 0.0], "tangential_distortion": [0.0, 0.0],
        }
        (root / "camera" / f"{id_}.json").write_text(json.dumps(cam))
        for s in factors:
            save_png(root / "rgb" / f"{s}x" / f"{id_}.png", image(i, 3, cams.width // s, cams.height // s))
    (root / "dataset.json").write_text(json.dumps({
        "count": len(ids), "num_exemplars": len(train), "ids": ids,
        "train_ids": [ids[i] for i in train], "val_ids": [ids[i] for i in val],
    }))
    (root / "metadata.json").write_text(json.dumps(
        {id_: {"warp_id": w, "appearance_id": w, "camera_id": 0} for id_, w in zip(ids, warp_ids)}
    ))
    (root / "scene.json").write_text(json.dumps(
        {"scale": scene_scale, "center": center.tolist(), "near": 0.1, "far": 3.0}
    ))


def projected(cams: Cameras, point: torch.Tensor) -> torch.Tensor:
    return cams.project(point.reshape(1, 3).to(cams.viewmats.dtype))[0][:, 0]
