"""A baked 4K4D frame's point colours in one numba pass (CPU, no gradients).

Per point: the softmax blend of the chosen source views' colours over the views that see it (0 where none
does), plus the SH residual tanh(SH(d)) x SH_SCALE for the direction d from the eye, clamped to [0, 1]:
what `ibr.point_colors(ibr.blend(...), ibr.sh_residual(...))` computes in ~30 torch ops over [N, n, 3]
and [N, 16, 3] tensors. Those stay the slow twin and test oracle (tests/test_fourk4d_shade.py). The
kernel computes in float64 and returns float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from splat4d.fields.sh import num_sh_bases
from splat4d.methods.fourk4d.ibr import SH_SCALE
from splat4d.render.projection_cpu import _sh_bases

_DEGREE = {num_sh_bases(d): d for d in range(4)}  # SH coefficients per point -> degree
_CHUNK = 256  # points per parallel task (one SH buffer each: no allocation per point)


@njit(parallel=True, cache=True, error_model="numpy")
def _shade(colors, logits, valid, sh, means, eye, degree, scale):
    N, n = logits.shape
    B = sh.shape[1]
    out = np.empty((N, 3), dtype=np.float32)
    for chunk in prange((N + _CHUNK - 1) // _CHUNK):
        bases = np.empty(B)
        for i in range(chunk * _CHUNK, min(N, (chunk + 1) * _CHUNK)):
            top = -np.inf
            for j in range(n):
                if valid[i, j] and logits[i, j] > top:
                    top = logits[i, j]
            r = g = b = 0.0
            if top > -np.inf:
                total = 0.0
                for j in range(n):
                    if valid[i, j]:
                        w = math.exp(logits[i, j] - top)
                        total += w
                        r += w * colors[i, j, 0]
                        g += w * colors[i, j, 1]
                        b += w * colors[i, j, 2]
                r, g, b = r / total, g / total, b / total
            dx, dy, dz = means[i, 0] - eye[0], means[i, 1] - eye[1], means[i, 2] - eye[2]
            norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            _sh_bases(degree, dx / norm, dy / norm, dz / norm, bases)
            s0 = s1 = s2 = 0.0
            for k in range(B):
                s0 += bases[k] * sh[i, k, 0]
                s1 += bases[k] * sh[i, k, 1]
                s2 += bases[k] * sh[i, k, 2]
            out[i, 0] = min(max(r + math.tanh(s0) * scale, 0.0), 1.0)
            out[i, 1] = min(max(g + math.tanh(s1) * scale, 0.0), 1.0)
            out[i, 2] = min(max(b + math.tanh(s2) * scale, 0.0), 1.0)
    return out


def shade_cpu(colors: Tensor, logits: Tensor, valid: Tensor, sh: Tensor, means: Tensor, eye: Tensor) -> Tensor:
    """[N, 3] float32 point colours from the chosen views' colours [N, n, 3], logits [N, n], valid [N, n]
    and SH coefficients [N, B, 3] (B = 1, 4, 9 or 16), for points `means` [N, 3] seen from `eye` [3]."""
    if sh.shape[1] not in _DEGREE:
        raise ValueError(f"SH coefficients per point must be 1, 4, 9 or 16, got {sh.shape[1]}")
    a = lambda t, dt=torch.float32: np.ascontiguousarray(t.detach().to("cpu", dt).numpy())  # noqa: E731
    out = _shade(a(colors), a(logits), a(valid, torch.bool), a(sh), a(means), a(eye, torch.float64),
                 _DEGREE[sh.shape[1]], SH_SCALE)
    return torch.from_numpy(out)
