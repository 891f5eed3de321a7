"""HexPlane / K-Planes feature field over (x, y, z, t), as used by 4DGaussians.

Six 2-D feature planes, one per coordinate pair in ``itertools.combinations(range(4), 2)``::

    index  pair    kind    parameter shape
    0      (x, y)  space   [1, C, res_y * m, res_x * m]
    1      (x, z)  space   [1, C, res_z * m, res_x * m]
    2      (x, t)  time    [1, C, res_t,     res_x * m]
    3      (y, z)  space   [1, C, res_z * m, res_y * m]
    4      (y, t)  time    [1, C, res_t,     res_y * m]
    5      (z, t)  time    [1, C, res_t,     res_z * m]

for each multires factor ``m`` (``C = out_dim``). A plane for pair (a, b) has shape ``[1, C, res_b, res_a]``:
``grid_sample`` reads grid[..., 0] along the last (W) axis, so the first coordinate of the pair indexes W.
In every time plane, time is therefore the H axis (dim -2) and the spatial coordinate is the W axis (dim -1).

A query is sampled bilinearly from each plane (``align_corners=True``, ``padding_mode="border"`` so points
outside the box read the edge values), the six features are multiplied, and the per-scale products are
concatenated. Time planes start at 1 so that, initially, the field is a purely spatial (static) feature.

Differences from the 4DGaussians code, on purpose:
- bounds are given as (min, max); 4DGaussians stores (max, min), which mirrors every axis.
- t in [0, 1] is mapped to [-1, 1]; 4DGaussians feeds t unchanged, so only half of each time axis is used.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splat4d.fields import hexplane_cpu, hexplane_cpu_flat

PAIRS: tuple[tuple[int, int], ...] = tuple(itertools.combinations(range(4), 2))
"""Coordinate pairs of the six planes: (0,1) xy, (0,2) xz, (0,3) xt, (1,2) yz, (1,3) yt, (2,3) zt."""
SPACE_PLANES: tuple[int, ...] = tuple(i for i, p in enumerate(PAIRS) if 3 not in p)  # (0, 1, 3)
TIME_PLANES: tuple[int, ...] = tuple(i for i, p in enumerate(PAIRS) if 3 in p)  # (2, 4, 5)


def sample_plane(plane: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup in one plane.

    Args:
        plane: [1, C, H, W] features.
        uv: [N, 2] coordinates in [-1, 1]; uv[:, 0] indexes W, uv[:, 1] indexes H (align_corners=True:
            -1 and 1 are the centres of the first and last texels). Outside values read the border.

    Returns:
        [N, C] features.
    """
    n, c = uv.shape[0], plane.shape[1]
    grid = uv.to(plane.dtype).view(1, 1, n, 2)
    out = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)  # [1,C,1,N]
    return out.view(c, n).t()


def plane_tv(plane: Tensor) -> Tensor:
    """Total variation of a [B, C, H, W] plane, as 4DGaussians' ``compute_plane_tv``:
    2 * (mean squared first difference along H + mean squared first difference along W)."""
    dh = plane[..., 1:, :] - plane[..., :-1, :]
    dw = plane[..., :, 1:] - plane[..., :, :-1]
    zero = plane.new_zeros(())
    h_tv = dh.square().mean() if dh.numel() else zero
    w_tv = dw.square().mean() if dw.numel() else zero
    return 2.0 * (h_tv + w_tv)


def plane_smoothness(plane: Tensor) -> Tensor:
    """Mean squared second difference along H (dim -2; time in a time plane) of a [B, C, H, W] plane,
    as 4DGaussians' ``compute_plane_smoothness``. Zero when H < 3."""
    if plane.shape[-2] < 3:
        return plane.new_zeros(())
    d1 = plane[..., 1:, :] - plane[..., :-1, :]
    d2 = d1[..., 1:, :] - d1[..., :-1, :]
    return d2.square().mean()


def _as_bounds(bounds: Tensor | Sequence) -> Tensor:
    b = torch.as_tensor(bounds, dtype=torch.float32).detach().clone()
    if b.shape != (2, 3):
        raise ValueError(f"bounds must have shape [2, 3] (min, max), got {tuple(b.shape)}")
    if not bool(torch.all(b[1] > b[0])):
        raise ValueError(f"bounds need max > min on every axis, got min={b[0].tolist()} max={b[1].tolist()}")
    return b


class HexPlane(nn.Module):
    """Multi-scale HexPlane field: (xyz [N, 3], t [N]) -> features [N, out_dim * len(multires)].

    Args:
        bounds: [2, 3] box (min row, max row) mapped to [-1, 1]^3.
        resolution: (res_x, res_y, res_z, res_t) of the base scale.
        out_dim: channels C per plane (and per scale in the output).
        multires: spatial resolution multipliers, one scale each; the time resolution is not multiplied.
        backend: "auto" (the fused numba kernels of `hexplane_cpu` for float32 on the CPU, else torch),
            "cpu" or "torch" (`grid_sample`; the reference the fused kernels are tested against).
        fused: store the planes channels-last and read them in place (`hexplane_cpu`), and fuse the
            regularisers; False: contiguous planes copied per call (`hexplane_cpu_flat`, the previous
            kernels) and the regularisers in torch. Values are the same either way.

    Attributes:
        grids: ModuleList over scales of ParameterList of the six planes (order ``PAIRS``).
        bounds: [2, 3] buffer.
        feat_dim: output width, out_dim * len(multires).
    """

    bounds: Tensor

    def __init__(
        self,
        bounds: Tensor | Sequence,
        resolution: Sequence[int] = (64, 64, 64, 25),
        out_dim: int = 32,
        multires: Sequence[int] = (1, 2),
        backend: str = "auto",
        fused: bool = True,
    ):
        super().__init__()
        self.fused = bool(fused)
        if backend not in ("auto", "cpu", "torch"):
            raise ValueError(f"backend must be auto, cpu or torch, got {backend!r}")
        self.backend = backend
        if len(resolution) != 4 or min(resolution) < 1:
            raise ValueError(f"resolution must be 4 positive ints (x, y, z, t), got {resolution}")
        if len(multires) == 0:
            raise ValueError("multires needs at least one scale")
        self.register_buffer("bounds", _as_bounds(bounds))
        self.resolution = tuple(int(r) for r in resolution)
        self.out_dim = int(out_dim)
        self.multires = tuple(int(m) for m in multires)
        self.feat_dim = self.out_dim * len(self.multires)
        self.grids = nn.ModuleList()
        for m in self.multires:
            reso = [r * m for r in self.resolution[:3]] + [self.resolution[3]]
            planes = nn.ParameterList()
            for a, b in PAIRS:
                p = torch.empty(1, self.out_dim, reso[b], reso[a], device=self.bounds.device)
                if self.fused:
                    p = p.to(memory_format=torch.channels_last)
                p = nn.Parameter(p)
                if b == 3:
                    nn.init.ones_(p)
                else:
                    nn.init.uniform_(p, a=0.1, b=0.5)
                planes.append(p)
            self.grids.append(planes)

    _table = None  # (kernel module, its plane table): shapes never change after construction

    def _use_cpu_kernels(self, pts: Tensor) -> bool:
        if self.backend == "torch":
            return False
        ok = pts.device.type == "cpu" and pts.dtype == torch.float32
        if self.backend == "cpu" and not ok:
            raise ValueError("HexPlane backend 'cpu' needs float32 inputs on the CPU")
        return ok

    @torch.no_grad()
    def set_bounds(self, bounds: Tensor | Sequence) -> None:
        """Replace the [2, 3] (min, max) box; the planes are kept as they are."""
        self.bounds.copy_(_as_bounds(bounds).to(self.bounds))

    def normalize(self, xyz: Tensor, t: Tensor | float) -> Tensor:
        """Map xyz [N, 3] with the bounds and t (scalar, [N] or [N, 1], in [0, 1]) to [N, 4] in [-1, 1]."""
        n = xyz.shape[0]
        t = torch.as_tensor(t, dtype=xyz.dtype, device=xyz.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        if t.shape[0] != n:
            raise ValueError(f"t must be a scalar or have N={n} entries, got {t.shape[0]}")
        lo, hi = self.bounds.to(xyz.dtype)
        p = (xyz - lo) * (2.0 / (hi - lo)) - 1.0
        return torch.cat([p, (2.0 * t - 1.0)[:, None]], dim=-1)

    def forward(self, xyz: Tensor, t: Tensor | float) -> Tensor:
        """Features at points and times.

        Args:
            xyz: [N, 3] world positions.
            t: time in [0, 1]: a scalar, [N] or [N, 1].

        Returns:
            [N, out_dim * len(multires)] — per scale the product of the six plane features, scales concatenated.
        """
        if xyz.dim() != 2 or xyz.shape[-1] != 3:
            raise ValueError(f"xyz must be [N, 3], got {tuple(xyz.shape)}")
        pts = self.normalize(xyz, t)  # [N, 4]
        if self._use_cpu_kernels(pts):
            planes = [p for scale in self.grids for p in scale]
            kernels = hexplane_cpu if self.fused else hexplane_cpu_flat
            if self._table is None or self._table[0] is not kernels:
                self._table = (kernels, kernels.plane_table(planes, PAIRS))
            return kernels.HexPlaneCPU.apply(pts, self._table[1], len(self.grids), *planes)
        feats = []
        for planes in self.grids:
            f = None
            for plane, (a, b) in zip(planes, PAIRS):
                s = sample_plane(plane, pts[:, [a, b]])  # [N, C]
                f = s if f is None else f * s
            feats.append(f)
        return torch.cat(feats, dim=-1)

    def space_planes(self) -> Iterator[nn.Parameter]:
        """The xy, xz, yz planes of every scale (shapes [1, C, res_b, res_a])."""
        for planes in self.grids:
            for i in SPACE_PLANES:
                yield planes[i]

    def time_planes(self) -> Iterator[nn.Parameter]:
        """The xt, yt, zt planes of every scale, shape [1, C, res_t, res_space]: time is dim -2 (H)."""
        for planes in self.grids:
            for i in TIME_PLANES:
                yield planes[i]

    def plane_tv(self) -> Tensor:
        """Sum over scales and spatial planes of ``plane_tv`` (4DGaussians' compute_plane_tv)."""
        return torch.stack([plane_tv(p) for p in self.space_planes()]).sum()

    def time_smoothness(self) -> Tensor:
        """Sum over scales and time planes of the mean squared second difference along time (dim -2)."""
        return torch.stack([plane_smoothness(p) for p in self.time_planes()]).sum()

    def time_l1(self) -> Tensor:
        """Sum over scales and time planes of mean |1 - plane| (pulls time planes toward "no motion")."""
        return torch.stack([(1.0 - p).abs().mean() for p in self.time_planes()]).sum()

    def regularisation(self, tv_weight: float, smoothness_weight: float, l1_weight: float,
                       fused: bool | None = None) -> Tensor:
        """tv_weight * plane_tv() + smoothness_weight * time_smoothness() + l1_weight * time_l1() (0-dim).

        `fused` (default: the module's `fused`; float32 planes on the CPU, backend not "torch") computes
        all three and their gradients in one numba pass (`hexplane_cpu.plane_regularisers`); otherwise
        the torch ops above, its twin."""
        planes = [p for scale in self.grids for p in scale]
        fused = self.fused if fused is None else fused
        if fused and self.backend != "torch" and planes[0].device.type == "cpu" and planes[0].dtype == torch.float32:
            kinds = np.array([int(3 in PAIRS[i % len(PAIRS)]) for i in range(len(planes))], dtype=np.int64)
            weights = (float(tv_weight), float(smoothness_weight), float(l1_weight))
            return hexplane_cpu.HexPlaneRegCPU.apply(kinds, weights, *planes)
        return tv_weight * self.plane_tv() + smoothness_weight * self.time_smoothness() + l1_weight * self.time_l1()

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, out_dim={self.out_dim}, multires={self.multires}"
