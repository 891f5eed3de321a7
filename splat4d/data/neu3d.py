"""Neu3D / DyNeRF layout (synchronised multi-view video with LLFF poses).

    poses_bounds.npy         [N, 17]: 3x5 [camera-to-world | (H, W, focal)] + near, far per camera
    cam00.mp4 cam01.mp4 ...  one video per camera, in the order of the pose rows (sorted by number)
      or camXX/images/0000.png ... (or camXX/0000.png): frames already extracted (preferred when present)
    points3D_downsample2.ply | points3d.ply   optional initial point cloud

cam00 (else the lowest-numbered camera) is the test camera, the others train; there is no val split.
Frame i of F has time i / (F - 1); cameras with different frame counts are cut to the shortest.
Intrinsics are scaled to the actual image size when it differs from the H, W stored in the poses.

Videos are decoded lazily: the first access to a video decodes all its frames at the requested scale
into memory (a per-scene cache holding at most `video_cache_gb`; least recently used videos are
dropped). For videos the view cameras are therefore already at the requested scale and the scene's
own `scale` is 1.0. For full-size footage, extracting frames first is much faster for training.
`scene.near_far` ([C, 2], per camera) keeps the near/far bounds of poses_bounds.npy.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from splat4d.cameras import Cameras
from splat4d.data.common import (
    check_cameras_finite,
    check_scale,
    finish_scene,
    image_size,
    index_times,
    read_point_cloud,
)
from splat4d.data.scene import CallableImage, DynamicScene, FileImage, View, _resize
from splat4d.errors import DatasetError

NAME = "neu3d"
LAYOUT = (
    "neu3d: poses_bounds.npy with cam00.mp4, cam01.mp4, ... or extracted frames camXX/images/0000.png "
    "(or camXX/0000.png), optional points3D_downsample2.ply or points3d.ply"
)
POINT_FILES = ("points3D_downsample2.ply", "points3d.ply", "points3D.ply")
_CAM_RE = re.compile(r"^cam(\d+)$")
_FRAME_SUFFIXES = {".png", ".jpg", ".jpeg"}


def detect(path: Path) -> bool:
    path = Path(path)
    return (path / "poses_bounds.npy").is_file() and bool(_frame_dirs(path) or _videos(path))


def load(
    path: Path, scale: float = 1.0, background=(0.0, 0.0, 0.0), video_cache_gb: float = 2.0
) -> DynamicScene:
    """Read a Neu3D folder into a DynamicScene (cam00 = test, the rest train)."""
    path = Path(path)
    scale = check_scale(scale)
    pb_file = path / "poses_bounds.npy"
    if not pb_file.is_file():
        raise DatasetError(f"missing {pb_file}; expected {LAYOUT}")
    try:
        pb = np.load(pb_file)
    except Exception as e:
        raise DatasetError(f"unreadable {pb_file}: {e}") from None
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise DatasetError(f"{pb_file} must hold an [N, 17] array, got shape {tuple(pb.shape)}")

    frame_dirs = _frame_dirs(path)
    videos = {} if frame_dirs else _videos(path)
    sources = frame_dirs or videos
    if not sources:
        raise DatasetError(f"no camera videos or frame folders next to {pb_file}; expected {LAYOUT}")
    numbers = sorted(sources)
    if len(numbers) != len(pb):
        kind = "frame folders" if frame_dirs else "videos"
        raise DatasetError(
            f"{pb_file} has {len(pb)} camera poses but the folder has {len(numbers)} camera {kind} "
            f"({', '.join(_cam_name(n) for n in numbers[:6])}{', ...' if len(numbers) > 6 else ''})"
        )
    if not np.isfinite(pb).all():
        raise DatasetError(f"non-finite (NaN or Inf) camera matrix in {pb_file}")
    cams, near_far = Cameras.from_llff(pb)
    check_cameras_finite(cams, pb_file)

    if frame_dirs:
        files = {n: _frame_files(frame_dirs[n]) for n in numbers}
        w, h = image_size(files[numbers[0]][0])
        cams = _resize_intrinsics(cams, w, h)
        num_frames = min(len(f) for f in files.values())
        refs = {n: [FileImage(f) for f in files[n][:num_frames]] for n in numbers}
        scene_scale = scale
    else:
        w, h = _video_size(videos[numbers[0]])
        cams = _resize_intrinsics(cams, w, h)
        if scale != 1.0:
            cams = cams.rescale(scale)
        num_frames = min(_count_frames(videos[n]) for n in numbers)
        cache = _VideoCache(int(video_cache_gb * 2**30))
        refs = {
            n: [_video_frame(cache, videos[n], i, cams.width, cams.height) for i in range(num_frames)]
            for n in numbers
        }
        scene_scale = 1.0
    if num_frames == 0:
        raise DatasetError(f"no frames found for the cameras of {path}")

    times = index_times(num_frames)
    test_number = 0 if 0 in numbers else numbers[0]
    splits: dict[str, list[View]] = {"train": [], "val": [], "test": []}
    for cam_id, n in enumerate(numbers):
        split = "test" if n == test_number else "train"
        cam = cams[cam_id]
        splits[split] += [
            View(camera=cam, time=times[f], cam_id=cam_id, frame_id=f, image=refs[n][f]) for f in range(num_frames)
        ]

    points = colors = None
    for name in POINT_FILES:
        if (path / name).is_file():
            points, colors = read_point_cloud(path / name)
            break
    scene = finish_scene(
        path.resolve().name, NAME, splits, scale=scene_scale, background=background,
        num_cameras=len(numbers), num_frames=num_frames, points=points, point_colors=colors,
    )
    scene.near_far = near_far  # [C, 2] per camera, camera order = cam_id
    return scene


# ------------------------------------------------------------------ discovery
def _cam_name(n: int) -> str:
    return f"cam{n:02d}"


def _videos(path: Path) -> dict[int, Path]:
    out = {}
    for p in path.glob("cam*.mp4"):
        m = _CAM_RE.match(p.stem)
        if m and p.is_file():
            out[int(m.group(1))] = p
    return out


def _frame_dirs(path: Path) -> dict[int, Path]:
    out = {}
    for p in path.glob("cam*"):
        m = _CAM_RE.match(p.name)
        if not (m and p.is_dir()):
            continue
        d = p / "images" if (p / "images").is_dir() else p
        if any(f.suffix.lower() in _FRAME_SUFFIXES for f in d.iterdir()):
            out[int(m.group(1))] = d
    return out


def _frame_files(d: Path) -> list[Path]:
    files = [f for f in d.iterdir() if f.suffix.lower() in _FRAME_SUFFIXES and f.is_file()]
    # numeric order when the stems are numbers (0000, 0001, ... or 0, 1, ..., 10)
    return sorted(files, key=lambda f: (int(f.stem), f.name) if f.stem.isdigit() else (1 << 62, f.name))


def _resize_intrinsics(cams: Cameras, w: int, h: int) -> Cameras:
    """Scale intrinsics from the H, W stored in poses_bounds.npy to the actual image size."""
    if (w, h) == (cams.width, cams.height):
        return cams
    Ks = cams.Ks.clone()
    Ks[:, 0, :] *= w / cams.width
    Ks[:, 1, :] *= h / cams.height
    return Cameras(cams.viewmats, Ks, w, h)


# --------------------------------------------------------------------- video
def _video_size(video: Path) -> tuple[int, int]:
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(video))
        meta = next(gen)
        gen.close()
        w, h = meta["size"]
        return int(w), int(h)
    except Exception as e:
        raise DatasetError(f"cannot read video {video}: {e}") from None


def _count_frames(video: Path) -> int:
    import imageio_ffmpeg

    try:
        return int(imageio_ffmpeg.count_frames_and_secs(str(video))[0])
    except Exception as e:
        raise DatasetError(f"cannot read video {video}: {e}") from None


def _decode_video(video: Path, w: int, h: int) -> np.ndarray:
    """All frames of `video` as uint8 [F, h, w, 3], each resized like every other image (box filter)."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(video), pix_fmt="rgb24")
        nw, nh = next(gen)["size"]
        frames = []
        for b in gen:
            f = np.frombuffer(b, dtype=np.uint8).reshape(nh, nw, 3)
            frames.append(f if (nw, nh) == (w, h) else _resize(f, w, h))
    except Exception as e:
        raise DatasetError(f"cannot decode video {video}: {e}") from None
    if not frames:
        raise DatasetError(f"video {video} has no decodable frames")
    return np.stack(frames)


class _VideoCache:
    """Decoded videos kept in memory, least recently used dropped beyond `max_bytes` (always keeps one)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._videos: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def frame(self, video: Path, index: int, w: int, h: int) -> np.ndarray:
        key = (str(video), w, h)
        with self._lock:
            frames = self._videos.get(key)
            if frames is None:
                frames = _decode_video(video, w, h)
                self._videos[key] = frames
                while len(self._videos) > 1 and sum(v.nbytes for v in self._videos.values()) > self.max_bytes:
                    self._videos.popitem(last=False)
            self._videos.move_to_end(key)
        if index >= len(frames):
            raise DatasetError(f"video {video} has {len(frames)} decodable frames, frame {index} requested")
        return frames[index]


def _video_frame(cache: _VideoCache, video: Path, index: int, w: int, h: int) -> CallableImage:
    return CallableImage(lambda: cache.frame(video, index, w, h), name=f"{video}#frame{index}")

