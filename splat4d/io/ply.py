"""PLY files: Gaussians in the 3DGS convention, and coloured point clouds.

3DGS layout (binary little-endian, one float32 property each, in this order):
``x y z nx ny nz f_dc_0..2 f_rest_0..f_rest_{3(K-1)-1} opacity scale_0..2 rot_0..3`` where
``f_dc`` is the SH degree-0 coefficient per channel, ``f_rest`` the higher coefficients stored
channel-major (the [N, 3, K-1] array flattened: all of R's coefficients, then G's, then B's),
``opacity`` the logit, ``scale_*`` the log scales and ``rot_*`` the quaternion (w, x, y, z),
unnormalised. The API takes and returns *activated* values (gsplat's convention): scales > 0,
opacities in (0, 1), SH coefficients [N, K, 3] (coefficient-major, as renderers use them).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from splat4d.errors import DatasetError
from splat4d.io.atomic import atomic_path
from splat4d.io.images import to_numpy, to_uint8

SH_C0 = 0.28209479177387814
"""Degree-0 SH basis constant: colour = SH_C0 * f_dc + 0.5."""
_OPACITY_EPS = 1e-7  # keeps logit finite for opacities of exactly 0 or 1


def gaussian_ply_fields(num_sh: int) -> list[str]:
    """Property names of a 3DGS PLY with `num_sh` = K = (degree + 1)^2 SH coefficients per channel."""
    return (
        ["x", "y", "z", "nx", "ny", "nz"]
        + [f"f_dc_{i}" for i in range(3)]
        + [f"f_rest_{i}" for i in range(3 * (num_sh - 1))]
        + ["opacity"]
        + [f"scale_{i}" for i in range(3)]
        + [f"rot_{i}" for i in range(4)]
    )


def _f64(x, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    a = to_numpy(x).astype(np.float64)
    if a.shape[1:] != shape_tail:
        raise ValueError(f"{name} must have shape [N, {', '.join(map(str, shape_tail))}], got {a.shape}")
    return a


def _write_vertices(path: Path, data: np.ndarray) -> Path:
    from plyfile import PlyData, PlyElement

    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<").write(str(tmp))
    return path


def _read_vertices(path: str | os.PathLike) -> np.ndarray:
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing PLY file {path}")
    try:
        ply = PlyData.read(str(path))
        return ply["vertex"].data
    except Exception as e:  # plyfile raises several types for malformed files
        raise DatasetError(f"unreadable PLY file {path}: {e}") from None


def save_gaussians_ply(path: str | os.PathLike, means, quats, scales, opacities, sh) -> Path:
    """Write Gaussians in the 3DGS PLY layout (atomically).

    Args:
        means: centres. [N, 3]
        quats: rotations (w, x, y, z), any norm. [N, 4]
        scales: activated (positive) scales. [N, 3]
        opacities: activated opacities in [0, 1]. [N] or [N, 1]
        sh: SH coefficients [N, K, 3] with K = (degree + 1)^2, or DC only [N, 3].
    Returns:
        the path written.
    """
    m = _f64(means, "means", (3,))
    N = m.shape[0]
    q = _f64(quats, "quats", (4,))
    s = _f64(scales, "scales", (3,))
    o = to_numpy(opacities).astype(np.float64).reshape(-1)
    c = to_numpy(sh).astype(np.float64)
    if c.ndim == 2:
        c = c[:, None, :]
    if c.ndim != 3 or c.shape[2] != 3:
        raise ValueError(f"sh must have shape [N, K, 3] or [N, 3], got {c.shape}")
    if not (q.shape[0] == s.shape[0] == o.shape[0] == c.shape[0] == N):
        raise ValueError("means, quats, scales, opacities and sh disagree on the number of Gaussians")
    if (s <= 0).any():
        raise ValueError("scales must be positive (activated), not log-scales")
    K = c.shape[1]
    o = np.clip(o, _OPACITY_EPS, 1 - _OPACITY_EPS)
    columns = [m, np.zeros((N, 3)), c[:, 0, :], c[:, 1:, :].transpose(0, 2, 1).reshape(N, -1),
               np.log(o / (1 - o))[:, None], np.log(s), q]
    flat = np.concatenate(columns, axis=1).astype(np.float32)  # [N, 17 + 3(K-1)]
    names = gaussian_ply_fields(K)
    data = np.empty(N, dtype=[(n, "f4") for n in names])
    for i, n in enumerate(names):
        data[n] = flat[:, i]
    return _write_vertices(Path(path), data)


def load_gaussians_ply(path: str | os.PathLike) -> dict[str, Tensor | int]:
    """Read a 3DGS PLY into activated float32 tensors.

    Returns:
        dict with means [N, 3], quats [N, 4] (w, x, y, z, as stored), scales [N, 3] (exp of the stored
        log), opacities [N] (sigmoid of the stored logit), sh [N, K, 3], sh_degree (int, -1 if K is not
        a square).
    """
    v = _read_vertices(path)
    names = v.dtype.names or ()
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    need = [n for n in gaussian_ply_fields(n_rest // 3 + 1) if n not in ("nx", "ny", "nz")]
    missing = [n for n in need if n not in names]
    if missing or n_rest % 3:
        raise DatasetError(f"{path} is not a 3DGS Gaussian PLY (missing {missing[:5]}, {n_rest} f_rest fields)")
    col = lambda *ns: np.stack([np.asarray(v[n], dtype=np.float64) for n in ns], axis=1)  # noqa: E731
    N, K = len(v), n_rest // 3 + 1
    sh = np.empty((N, K, 3))
    sh[:, 0, :] = col("f_dc_0", "f_dc_1", "f_dc_2")
    if K > 1:
        sh[:, 1:, :] = col(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(N, 3, K - 1).transpose(0, 2, 1)
    deg = math.isqrt(K) - 1 if math.isqrt(K) ** 2 == K else -1
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
    return {
        "means": t(col("x", "y", "z")),
        "quats": t(col("rot_0", "rot_1", "rot_2", "rot_3")),
        "scales": t(np.exp(col("scale_0", "scale_1", "scale_2"))),
        "opacities": t(1.0 / (1.0 + np.exp(-col("opacity")[:, 0]))),
        "sh": t(sh),
        "sh_degree": deg,
    }


def save_points_ply(path: str | os.PathLike, xyz, rgb=None) -> Path:
    """Write a point cloud: float32 x, y, z and, with `rgb` ([N, 3] uint8 or float in [0, 1]), uchar
    red, green, blue. Atomic."""
    p = _f64(xyz, "xyz", (3,)).astype(np.float32)
    dtype = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        c = to_uint8(rgb)
        if c.shape != p.shape:
            raise ValueError(f"rgb must have shape {p.shape}, got {c.shape}")
        dtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(p), dtype=dtype)
    data["x"], data["y"], data["z"] = p[:, 0], p[:, 1], p[:, 2]
    if rgb is not None:
        data["red"], data["green"], data["blue"] = c[:, 0], c[:, 1], c[:, 2]
    return _write_vertices(Path(path), data)


def load_points_ply(path: str | os.PathLike) -> tuple[Tensor, Tensor | None]:
    """Read points (x, y, z) and colours if present -> (xyz float32 [N, 3], rgb float32 [N, 3] in [0, 1]
    or None). Colours come from red/green/blue (uchar or float), r/g/b, diffuse_red/..., or a 3DGS
    file's f_dc_* (colour = SH_C0 * f_dc + 0.5)."""
    v = _read_vertices(path)
    names = set(v.dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise DatasetError(f"{path} has no x, y, z vertex properties")
    xyz = torch.from_numpy(np.stack([np.asarray(v[n], dtype=np.float32) for n in "xyz"], axis=1))
    rgb = None
    for triple in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if set(triple) <= names:
            c = np.stack([np.asarray(v[n]) for n in triple], axis=1)
            if c.dtype.kind in "ui" or c.max(initial=0) > 1.0:
                c = c.astype(np.float64) / (65535.0 if c.dtype == np.uint16 else 255.0)
            rgb = torch.from_numpy(c.astype(np.float32))
            break
    else:
        if {"f_dc_0", "f_dc_1", "f_dc_2"} <= names:
            dc = np.stack([np.asarray(v[f"f_dc_{i}"], dtype=np.float64) for i in range(3)], axis=1)
            rgb = torch.from_numpy(np.clip(SH_C0 * dc + 0.5, 0, 1).astype(np.float32))
    return xyz, rgb
