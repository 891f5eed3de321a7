"""Image files and simple layouts (side by side, grids) for renders and comparisons.

Images are [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], as numpy arrays or torch tensors, either uint8
or float in [0, 1] (floats are clipped and rounded to uint8 when written).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from splat4d.errors import DatasetError
from splat4d.io.atomic import atomic_path


def to_numpy(img) -> np.ndarray:
    """Tensor or array -> numpy array (detached, on the CPU), dtype unchanged."""
    if isinstance(img, torch.Tensor):
        return img.detach().cpu().numpy()
    return np.asarray(img)


def to_uint8(img) -> np.ndarray:
    """uint8 image: uint8 passes through, floats in [0, 1] are clipped and rounded."""
    a = to_numpy(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    return (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(path: str | os.PathLike, img) -> Path:
    """Write an image (format from the suffix: .png, .jpg, ...) atomically; returns the path.

    JPEG cannot store alpha, so RGBA is written as RGB there.
    """
    from PIL import Image

    a = to_uint8(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"cannot save an image of shape {a.shape}")
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg") and a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    fmt = Image.registered_extensions().get(path.suffix.lower())  # the temp name keeps the suffix anyway
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(a)).save(tmp, format=fmt)
    return path


def load_image(path: str | os.PathLike, as_float: bool = False) -> np.ndarray:
    """Read an image as uint8 [H, W] (grey), [H, W, 3] or [H, W, 4]; float32 in [0, 1] with `as_float`."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing image file {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            a = np.asarray(im).copy()
    except Exception as e:  # PIL raises many types for truncated or corrupt files
        raise DatasetError(f"unreadable image {path}: {e}") from None
    return a.astype(np.float32) / 255.0 if as_float else a


def _common_format(images: list) -> list[np.ndarray]:
    """Same dtype (uint8 if any is uint8, else float32) and same channel count (3, or 4 if all are RGBA)."""
    arrays = [to_numpy(im) for im in images]
    if not arrays:
        raise ValueError("no images given")
    if any(a.dtype == np.uint8 for a in arrays):
        arrays = [to_uint8(a) for a in arrays]
    else:
        arrays = [a.astype(np.float32) for a in arrays]
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    chans = 4 if all(a.shape[-1] == 4 for a in arrays) else 3
    out = []
    for a in arrays:
        if a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        out.append(a[..., :chans])
    return out


def _pad_to(a: np.ndarray, h: int, w: int, fill: float) -> np.ndarray:
    out = np.full((h, w, a.shape[-1]), fill, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def side_by_side(*images, gap: int = 0, fill: float = 0) -> np.ndarray:
    """Images placed left to right (top-aligned, shorter ones padded with `fill`). [H, sum W + gaps, C]"""
    return image_grid(list(images), cols=len(images), gap=gap, fill=fill)


def image_grid(images: list, cols: int | None = None, gap: int = 0, fill: float = 0) -> np.ndarray:
    """Images in a grid of `cols` columns (default: about square), row-major, each cell the size of
    the largest image; empty cells and padding take `fill` (in the images' own scale). [H', W', C]"""
    arrays = _common_format(images)
    n = len(arrays)
    cols = max(1, min(n, cols or int(np.ceil(np.sqrt(n)))))
    rows = int(np.ceil(n / cols))
    h = max(a.shape[0] for a in arrays)
    w = max(a.shape[1] for a in arrays)
    C, dtype = arrays[0].shape[-1], arrays[0].dtype
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, C), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        r, c = divmod(i, cols)
        y, x = r * (h + gap), c * (w + gap)
        out[y : y + h, x : x + w] = _pad_to(a, h, w, fill)
    return out
