"""MP4 video via imageio (v3 API) and imageio-ffmpeg's bundled ffmpeg: H.264 (libx264), yuv420p.

yuv420p halves the chroma resolution, so odd widths/heights are padded to even by repeating the last
row/column; the file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from splat4d.errors import DatasetError
from splat4d.io.atomic import atomic_path
from splat4d.io.images import to_numpy, to_uint8


def _frames_uint8(frames) -> np.ndarray:
    """list/array/tensor of [H, W], [H, W, 1|3|4] frames, uint8 or float [0, 1] -> uint8 [T, H, W, 3]."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames to write")
        arr = np.stack([to_uint8(f) for f in frames])
    else:
        arr = to_uint8(to_numpy(frames))
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[0] == 0 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected frames [T, H, W, 3], got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr[..., :3]  # video has no alpha


def _pad_even(arr: np.ndarray) -> np.ndarray:
    """Pad [T, H, W, 3] to even H and W by edge replication."""
    ph, pw = arr.shape[1] % 2, arr.shape[2] % 2
    if ph or pw:
        arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return arr


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
"""Containers `write_video` writes H.264 into (ffmpeg picks the container from the suffix)."""


def write_video(path: str | os.PathLike, frames, fps: float = 24, quality: int = 8) -> Path:
    """Write frames ([T, H, W, 3] uint8 or float in [0, 1], or a list of frames) as an H.264 mp4.

    Args:
        path: output file (.mp4; the container follows the suffix).
        frames: the frames; RGBA drops alpha, grey is repeated to RGB.
        fps: frames per second.
        quality: imageio-ffmpeg quality 0 (worst) to 10 (best).
    Returns:
        the path written.
    """
    import imageio.v3 as iio

    arr = np.ascontiguousarray(_pad_even(_frames_uint8(frames)))
    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(
            tmp, arr, plugin="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
            quality=quality, macro_block_size=1, ffmpeg_log_level="error",
        )
    return path


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3]."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing video file {path}")
    try:
        arr = iio.imread(path, plugin="FFMPEG", index=None)
    except Exception as e:  # ffmpeg errors surface as several exception types
        raise DatasetError(f"unreadable video {path}: {e}") from None
    arr = np.asarray(arr)
    if arr.ndim == 3:  # a single frame
        arr = arr[None]
    return arr[..., :3]
