"""`DynamicScene`: the one scene type every reader returns and every method consumes.

A scene is a list of views per split. A view is one image of one camera at one time t in [0, 1].
Images are read lazily (from a file, a video frame or memory) and resized by the scene's `scale`;
RGBA images are composited on the scene's background colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.errors import DatasetError


class ImageRef:
    """Where one image comes from. `read()` returns uint8 [H, W, C] (C = 1, 3 or 4)."""

    name: str = "<image>"

    def read(self) -> np.ndarray:
        raise NotImplementedError


class FileImage(ImageRef):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(self.path)

    def read(self) -> np.ndarray:
        from PIL import Image

        if not self.path.is_file():
            raise DatasetError(f"missing image file {self.path}")
        try:
            with Image.open(self.path) as im:
                im.load()
                if im.mode not in ("L", "RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                return np.asarray(im)
        except DatasetError:
            raise
        except Exception as e:  # PIL raises many types for truncated or corrupt files
            raise DatasetError(f"unreadable image {self.path}: {e}") from None


class ArrayImage(ImageRef):
    def __init__(self, array: np.ndarray, name: str = "<memory>"):
        self.array = array
        self.name = name

    def read(self) -> np.ndarray:
        return self.array


class CallableImage(ImageRef):
    """An image produced on demand (e.g. a decoded video frame)."""

    def __init__(self, fn: Callable[[], np.ndarray], name: str):
        self.fn = fn
        self.name = name

    def read(self) -> np.ndarray:
        return self.fn()


@dataclass
class View:
    """One observed image: camera (full resolution, C=1), time in [0, 1], ids, image and optional mask."""

    camera: Cameras
    time: float
    cam_id: int
    frame_id: int
    image: ImageRef
    mask: ImageRef | None = None
    depth: np.ndarray | None = None  # [H, W] camera-space z at full resolution, when known exactly


@dataclass
class DynamicScene:
    """Views per split plus what methods need to initialise: bounds, points, background.

    Attributes:
        name: scene name.
        format: reader that produced it ("dnerf", "neu3d", "hypernerf", "easyvolcap", "synthetic").
        splits: views per split name ("train", "val", "test").
        background: RGB in [0, 1] that RGBA images are composited on and renderers fill with.
        scale: resolution factor applied to every image and camera.
        bounds: axis-aligned scene box [2, 3] (min, max) in world units.
        points: optional initial points [P, 3]; point_colors [P, 3] in [0, 1].
        num_cameras / num_frames: distinct cameras and time steps over all splits.
        up: world up direction (used by orbit/spiral render paths).
        near_far: per-camera near/far planes [C, 2] when the format has them (LLFF, HyperNeRF).
    """

    name: str
    format: str
    splits: dict[str, list[View]]
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    bounds: Tensor = field(default_factory=lambda: torch.tensor([[-1.0] * 3, [1.0] * 3]))
    points: Tensor | None = None
    point_colors: Tensor | None = None
    num_cameras: int = 0
    num_frames: int = 0
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    near_far: Tensor | None = None  # [C, 2] per-camera near/far bounds when the format gives them

    def split(self, name: str) -> list[View]:
        if name not in self.splits:
            raise DatasetError(f"scene {self.name!r} has no split {name!r} (has {sorted(self.splits)})")
        return self.splits[name]

    @property
    def resolution(self) -> tuple[int, int]:
        """(width, height) of the images after scaling."""
        cam = self.camera(next(v for views in self.splits.values() for v in views))
        return cam.width, cam.height

    @property
    def time_range(self) -> tuple[float, float]:
        times = [v.time for views in self.splits.values() for v in views]
        return (min(times), max(times)) if times else (0.0, 0.0)

    def views_per_time(self, split: str = "train") -> float:
        """Median number of views of `split` that share a time step: ~1 for monocular captures (one
        camera per time step, D-NeRF, HyperNeRF), the camera count for synchronised multi-view video."""
        counts: dict[float, int] = {}
        for v in self.split(split):
            key = round(float(v.time), 6)
            counts[key] = counts.get(key, 0) + 1
        return float(np.median(list(counts.values()))) if counts else 0.0

    def camera(self, view: View) -> Cameras:
        return view.camera if self.scale == 1.0 else view.camera.rescale(self.scale)

    def cameras(self, split: str) -> Cameras:
        return Cameras.cat([self.camera(v) for v in self.split(split)])

    def times(self, split: str) -> Tensor:
        return torch.tensor([v.time for v in self.split(split)], dtype=torch.float32)

    def image(self, view: View) -> Tensor:
        """RGB float32 [H, W, 3] in [0, 1] at the scene's scale, alpha composited on the background."""
        rgb = self._composite(self._read_resized(view.image, view))
        if rgb.dtype == np.uint8:
            rgb = rgb.astype(np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(rgb))

    def image_uint8(self, view: View) -> np.ndarray:
        """RGB uint8 [H, W, 3] at the scene's scale: `image(view)` rounded to the nearest of 0..255.
        Images without alpha are returned as decoded (so `image == image_uint8 / 255` exactly); RGBA
        images are composited in float32 as `image` does and rounded, within 0.5/255 of `image`."""
        rgb = self._composite(self._read_resized(view.image, view))
        return rgb if rgb.dtype == np.uint8 else _round_uint8(rgb)

    def alpha(self, view: View) -> Tensor | None:
        """Foreground mask float32 [H, W] in [0, 1]: the mask image, else the image's alpha, else None."""
        m = self.alpha_uint8(view)
        return None if m is None else torch.from_numpy(m.astype(np.float32) / 255.0)

    def alpha_uint8(self, view: View) -> np.ndarray | None:
        """Foreground mask uint8 [H, W]: the mask image, else the image's alpha, else None."""
        if view.mask is not None:
            return np.ascontiguousarray(self._read_resized(view.mask, view)[..., 0])
        return self._image_alpha(self._read_resized(view.image, view))

    def view_uint8(self, view: View, alpha: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(`image_uint8(view)`, `alpha_uint8(view)` when `alpha` else None), decoding the image once."""
        arr = self._read_resized(view.image, view)
        rgb = self._composite(arr)
        rgb = rgb if rgb.dtype == np.uint8 else _round_uint8(rgb)
        if not alpha:
            return rgb, None
        return rgb, self.alpha_uint8(view) if view.mask is not None else self._image_alpha(arr)

    def has_masks(self, split: str = "train") -> bool:
        """Whether every view of `split` has a foreground mask: a mask file, or else an RGBA image (the
        first such view's image is decoded to find out)."""
        views = self.split(split)
        if all(v.mask is not None for v in views):
            return bool(views)
        first = next(v for v in views if v.mask is None)
        return self._read_resized(first.image, first).shape[-1] == 4

    def _composite(self, arr: np.ndarray) -> np.ndarray:
        """[H, W, 1|3|4] uint8 -> RGB [H, W, 3]: uint8 when there is no alpha, else float32 in [0, 1]
        composited on the background (the one place both `image` and `image_uint8` get RGB from)."""
        if arr.shape[-1] == 1:
            return np.repeat(arr, 3, axis=-1)
        if arr.shape[-1] == 3:
            return arr
        img = arr.astype(np.float32) / np.float32(255.0)
        a = img[..., 3:]
        return img[..., :3] * a + np.asarray(self.background, dtype=np.float32) * (np.float32(1.0) - a)

    @staticmethod
    def _image_alpha(arr: np.ndarray) -> np.ndarray | None:
        return np.ascontiguousarray(arr[..., 3]) if arr.shape[-1] == 4 else None

    def _read_resized(self, ref: ImageRef, view: View) -> np.ndarray:
        arr = ref.read()
        if arr.ndim == 2:
            arr = arr[..., None]
        cam = view.camera
        if arr.shape[0] != cam.height or arr.shape[1] != cam.width:
            raise DatasetError(
                f"image {ref.name} is {arr.shape[1]}x{arr.shape[0]}, expected {cam.width}x{cam.height}"
            )
        if self.scale != 1.0:
            w, h = self.camera(view).width, self.camera(view).height
            arr = _resize(arr, w, h)
        return arr

    def summary(self) -> dict:
        w, h = self.resolution
        t0, t1 = self.time_range
        return {
            "name": self.name,
            "format": self.format,
            "views": {k: len(v) for k, v in self.splits.items()},
            "resolution": [w, h],
            "cameras": self.num_cameras,
            "frames": self.num_frames,
            "time_range": [round(t0, 6), round(t1, 6)],
            "points": 0 if self.points is None else int(self.points.shape[0]),
            "background": list(self.background),
        }


def _round_uint8(img: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, rounding half up (as `splat4d.io.images.to_uint8`)."""
    return (np.clip(img, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def _resize(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    chans = [Image.fromarray(arr[..., c]).resize((w, h), Image.BOX) for c in range(arr.shape[-1])]
    return np.stack([np.asarray(c) for c in chans], axis=-1)


def count_unique_cameras(viewmats: Tensor, Ks: Tensor, decimals: int = 5) -> tuple[int, list[int]]:
    """Distinct cameras among views (same pose and intrinsics) -> (count, camera id per view)."""
    keys = torch.cat([viewmats.reshape(len(viewmats), -1), Ks.reshape(len(Ks), -1)], dim=1)
    keys = np.round(keys.double().numpy(), decimals)
    ids: dict[bytes, int] = {}
    out = [ids.setdefault(k.tobytes(), len(ids)) for k in keys]
    return len(ids), out


def select_cameras(scene: DynamicScene, train_cameras) -> DynamicScene:
    """The scene re-split by camera: the views of `train_cameras` (from any split) are the training split,
    every other camera's views the test split. Empty `train_cameras`: the scene unchanged."""
    chosen = set(int(c) for c in train_cameras)
    if not chosen:
        return scene
    every = [v for views in scene.splits.values() for v in views]
    cams = {v.cam_id for v in every}
    missing = sorted(chosen - cams)
    if missing:
        raise DatasetError(f"scene {scene.name!r} has no camera(s) {missing} (cameras: {sorted(cams)})")
    seen, train, test = set(), [], []
    for v in sorted(every, key=lambda v: (v.frame_id, v.cam_id)):  # a view in two splits counts once
        if (v.cam_id, v.frame_id) not in seen:
            seen.add((v.cam_id, v.frame_id))
            (train if v.cam_id in chosen else test).append(v)
    return replace(scene, splits={"train": train, "test": test} if test else {"train": train})
