"""A whole sequence of per-frame Gaussians (or coloured points) in one compressed npz archive.

Layout (all arrays float32 unless noted): `kind` ("gaussians" or "points"), `times` [F], `offsets` [F + 1]
(int64: frame f holds rows offsets[f]:offsets[f+1] of every per-primitive array), and the rows of all frames
one after another: means [N, 3], quats [N, 4] (w, x, y, z), scales [N, 3] (activated), opacities [N] and
sh [N, K, 3] for Gaussians; xyz [N, 3] and rgb [N, 3] (in [0, 1]) for points. numpy reads it without
splat4d: `np.load(path)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from splat4d.errors import DatasetError
from splat4d.io.atomic import atomic_path

FIELDS = {"gaussians": ("means", "quats", "scales", "opacities", "sh"), "points": ("xyz", "rgb")}


def save_sequence_npz(path: str | os.PathLike, kind: str, times: list[float], frames: list[dict]) -> Path:
    """Write `frames` (one dict of FIELDS[kind] tensors per time) as one archive (atomically)."""
    if kind not in FIELDS:
        raise ValueError(f"kind must be one of {sorted(FIELDS)}, got {kind!r}")
    if len(times) != len(frames) or not frames:
        raise ValueError("one frame per time, at least one")
    counts = [len(f[FIELDS[kind][0]]) for f in frames]
    arrays = {"kind": np.array(kind), "times": np.asarray(times, dtype=np.float32),
              "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)}
    for name in FIELDS[kind]:
        arrays[name] = np.concatenate([_np(f[name]) for f in frames]).astype(np.float32)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


def load_sequence_npz(path: str | os.PathLike) -> tuple[str, list[float], list[dict[str, Tensor]]]:
    """(kind, times, one dict of float32 tensors per frame) of an archive written by `save_sequence_npz`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing sequence archive {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            kind = str(z["kind"])
            data = {k: z[k] for k in ("times", "offsets", *FIELDS.get(kind, ()))}
    except Exception as e:  # numpy raises several types for damaged archives
        raise DatasetError(f"unreadable sequence archive {path}: {e}") from None
    if kind not in FIELDS:
        raise DatasetError(f"{path}: unknown kind {kind!r}")
    off = data["offsets"]
    frames = [{k: torch.from_numpy(np.ascontiguousarray(data[k][off[i]:off[i + 1]])) for k in FIELDS[kind]}
              for i in range(len(off) - 1)]
    return kind, [float(t) for t in data["times"]], frames


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
