"""A baked 4K4D frame's point colours in one numba pass (CPU, no gradients).

Per point: the softmax blend of the chosen source views' colours over the views that see it (0 where none
does), plus the SH residual tanh(SH(d)) x SH_SCALE for the direction d from the eye, clamped to [0, 1]:
what `ibr.point_colors(ibr.blend(...), ibr.sh_residual(...))` computes in ~30 torch ops over [N, n, 3]
and [N, 16, 3] tensors. Those stay the slow twin and test oracle (tests/test_fourk4d_shade.py). The
kernel reads the frame's stored arrays in place: it picks the chosen views by index and widens fp16 values
through a 65,536-entry table (numba has no float16), so nothing is gathered or converted beforehand (the
gather and conversion took as long as the blend). The softmax numerators come precomputed per frame
(`blend_weights`: exp(logit - the point's largest), whatever views a render chooses; the exps took 40 % of
the kernel), and a point whose chosen weights underflow is blended from its logits. It computes in float64
and returns float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload
from torch import Tensor

from splat4d.fields.sh import num_sh_bases
from splat4d.methods.fourk4d.ibr import SH_SCALE
from splat4d.render.projection_cpu import _sh_bases

_DEGREE = {num_sh_bases(d): d for d in range(4)}  # SH coefficients per point -> degree
_CHUNK = 256  # points per parallel task (one SH buffer each: no allocation per point)
_TINY = 1e-30
"""Below this sum of a point's blend weights (float32 loses precision near 1e-38) the blend is redone from
the logits."""
_HALF = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
"""Every fp16 bit pattern's value: an fp16 array is passed as its uint16 bits and read through this."""


def _value(x, table):  # the stored value x as a float (fp16 bits through `table`)
    raise NotImplementedError  # only called from numba, which uses the overload below


@overload(_value)
def _value_impl(x, table):
    if isinstance(x, types.Integer):
        return lambda x, table: table[x]
    return lambda x, table: x


@njit(parallel=True, cache=True, error_model="numpy")
def _shade(colors, views, weights, logits, valid, sh, means, eye, degree, scale, table, need):
    N, n = logits.shape[0], views.shape[0]
    B = sh.shape[1]
    out = np.empty((N, 3), dtype=np.float32)
    for chunk in prange((N + _CHUNK - 1) // _CHUNK):
        bases = np.empty(B)
        for i in range(chunk * _CHUNK, min(N, (chunk + 1) * _CHUNK)):
            if not need[i]:
                out[i, 0] = out[i, 1] = out[i, 2] = 0.0
                continue
            r = g = b = total = 0.0
            for j in range(n):
                v = views[j]
                if valid[i, v]:
                    w = weights[i, v]
                    total += w
                    r += w * _value(colors[i, v, 0], table)
                    g += w * _value(colors[i, v, 1], table)
                    b += w * _value(colors[i, v, 2], table)
            # no chosen view sees the point, or its weights underflowed: from the logits (a loop of its own; one
            # loop choosing per view between weight and exp measured 7-12 % slower)
            if total < _TINY:
                top = -np.inf
                for j in range(n):
                    v = views[j]
                    if valid[i, v] and logits[i, v] > top:
                        top = logits[i, v]
                r = g = b = total = 0.0
                if top > -np.inf:
                    for j in range(n):
                        v = views[j]
                        if valid[i, v]:
                            w = math.exp(logits[i, v] - top)
                            total += w
                            r += w * _value(colors[i, v, 0], table)
                            g += w * _value(colors[i, v, 1], table)
                            b += w * _value(colors[i, v, 2], table)
            if total > 0.0:
                r, g, b = r / total, g / total, b / total
            dx, dy, dz = means[i, 0] - eye[0], means[i, 1] - eye[1], means[i, 2] - eye[2]
            norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            _sh_bases(degree, dx / norm, dy / norm, dz / norm, bases)
            s0 = s1 = s2 = 0.0
            for k in range(B):
                s0 += bases[k] * _value(sh[i, k, 0], table)
                s1 += bases[k] * _value(sh[i, k, 1], table)
                s2 += bases[k] * _value(sh[i, k, 2], table)
            out[i, 0] = min(max(r + math.tanh(s0) * scale, 0.0), 1.0)
            out[i, 1] = min(max(g + math.tanh(s1) * scale, 0.0), 1.0)
            out[i, 2] = min(max(b + math.tanh(s2) * scale, 0.0), 1.0)
    return out


def _stored(t: Tensor) -> np.ndarray:
    """A float tensor as the kernel reads it: fp16 as its uint16 bits (no copy when contiguous), else float32."""
    t = t.detach().cpu()
    if t.dtype == torch.float16:
        return np.ascontiguousarray(t.contiguous().view(torch.int16).numpy().view(np.uint16))
    return np.ascontiguousarray(t.to(torch.float32).numpy())


def blend_weights(logits: Tensor, valid: Tensor) -> Tensor:
    """[..., V] float32 exp(logit - the largest logit of a view that sees the point), 0 where the view does
    not: the softmax numerators of every blend of a subset of the views, up to a factor per point (one
    exp per point and view, where a render otherwise takes one per point and chosen view)."""
    top = logits.masked_fill(~valid, -torch.inf).amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    return torch.where(valid, torch.exp(logits.float() - top), zero)


def shade_cpu(colors: Tensor, logits: Tensor, valid: Tensor, sh: Tensor, means: Tensor, eye: Tensor,
              views: Tensor | None = None, need: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
    """[N, 3] float32 point colours from the source views' colours [N, V, 3] (fp16 or fp32), logits [N, V],
    valid [N, V] and SH coefficients [N, B, 3] (B = 1, 4, 9 or 16; fp16 or fp32), for points `means` [N, 3]
    seen from `eye` [3], blending the views `views` [n] (indices into V; default all); only the points
    `need` [N] bool marks (default all; the others get 0). weights: `blend_weights(logits, valid)`, which a
    caller that shades one frame from many eyes computes once (default: computed here)."""
    if sh.shape[1] not in _DEGREE:
        raise ValueError(f"SH coefficients per point must be 1, 4, 9 or 16, got {sh.shape[1]}")
    if views is None:
        views = torch.arange(colors.shape[1], device="cpu")
    if weights is None:
        weights = blend_weights(logits, valid)
    a = lambda t, dt=torch.float32: np.ascontiguousarray(t.detach().to("cpu", dt).numpy())  # noqa: E731
    out = _shade(_stored(colors), a(views, torch.int64), a(weights), a(logits), a(valid, torch.bool), _stored(sh),
                 a(means), a(eye, torch.float64), _DEGREE[sh.shape[1]], SH_SCALE, _HALF,
                 np.ones(len(means), dtype=np.bool_) if need is None else a(need, torch.bool))
    return torch.from_numpy(out)
