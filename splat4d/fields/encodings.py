"""Input encodings: NeRF-style positional encoding and a learnable per-frame time table (ADC-GS)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def positional_encoding(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """Sinusoidal encoding.

    Convention (frequency-major, sin before cos; every block is D wide)::

        [x, sin(2^0 pi x), cos(2^0 pi x), sin(2^1 pi x), cos(2^1 pi x), ..., sin(2^(L-1) pi x), cos(2^(L-1) pi x)]

    with L = num_freqs; the leading ``x`` only when ``include_input``. So a 3-D input with L = 12 and no
    input gives 72 values (the ADC-GS fine-net position encoding).

    Args:
        x: [..., D].
        num_freqs: L >= 0.
        include_input: prepend x itself.

    Returns:
        [..., D * (include_input + 2 * num_freqs)].
    """
    if num_freqs < 0:
        raise ValueError(f"num_freqs must be >= 0, got {num_freqs}")
    parts = [x] if include_input else []
    if num_freqs > 0:
        freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [L]
        xf = x[..., None, :] * freqs[:, None]  # [..., L, D]
        sc = torch.stack([torch.sin(xf), torch.cos(xf)], dim=-2)  # [..., L, 2, D]
        parts.append(sc.flatten(-3))  # [..., L*2*D]
    if not parts:
        return x[..., :0]
    return torch.cat(parts, dim=-1)


def positional_encoding_dim(in_dim: int, num_freqs: int, include_input: bool = True) -> int:
    """Output width of ``positional_encoding``."""
    return in_dim * (int(include_input) + 2 * num_freqs)


def smooth_rows(table: Tensor, sigma: float) -> Tensor:
    """[rows, dim] blurred along the rows by a Gaussian of `sigma` rows (edges reflected), each column
    rescaled to zero mean and unit std."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=table.dtype, device=table.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    cols = table.t()[:, None, :]  # [dim, 1, rows]
    pad = min(radius, table.shape[0] - 1)
    cols = nn.functional.pad(cols, (pad, pad), mode="reflect") if pad > 0 else cols
    cols = nn.functional.pad(cols, (radius - pad, radius - pad), mode="replicate")
    out = nn.functional.conv1d(cols, kernel)[:, 0].t()  # [rows, dim]
    out = out - out.mean(0, keepdim=True)
    return out / out.std(0, keepdim=True).clamp_min(1e-8)


class TimeTable(nn.Module):
    """Learnable time embedding: table Z [frames, dim] read at t in [0, 1] by 1-D linear interpolation.

    Nodes are evenly spaced with align_corners semantics: t = 0 reads row 0, t = 1 reads row frames-1, and
    t = k / (frames - 1) reads row k exactly. Times outside [0, 1] are clamped (border padding).

    Args:
        frames: number of rows (>= 1).
        dim: embedding width.
        init_std: rows start as N(0, init_std^2); 0 gives zeros.
        init_smooth: correlation length of the initial rows in rows (0: independent rows): white noise
            blurred along the rows with a Gaussian of this sigma, then scaled back to init_std per column, so
            neighbouring rows (and the times read between them) start alike.
    """

    def __init__(self, frames: int, dim: int, init_std: float = 0.1, device: torch.device | str | None = None,
                 init_smooth: float = 0.0):
        super().__init__()
        if frames < 1 or dim < 1:
            raise ValueError(f"frames and dim must be >= 1, got frames={frames} dim={dim}")
        if init_smooth < 0:
            raise ValueError(f"init_smooth must be >= 0, got {init_smooth}")
        self.frames, self.dim = int(frames), int(dim)
        table = torch.randn(self.frames, self.dim, device="cpu")  # [frames, dim]; moved to `device` below
        if init_smooth > 0 and self.frames > 1:
            table = smooth_rows(table, init_smooth)
        self.table = nn.Parameter((table * init_std).to(device))

    def forward(self, t: Tensor | float) -> Tensor:
        """t: scalar or [...] in [0, 1] -> [..., dim] (scalar -> [dim])."""
        t = torch.as_tensor(t, dtype=self.table.dtype, device=self.table.device)
        if self.frames == 1:
            return self.table[0].expand(*t.shape, self.dim)
        pos = t.clamp(0.0, 1.0) * (self.frames - 1)  # [...]
        i0 = pos.detach().floor().long().clamp(0, self.frames - 2)
        w = (pos - i0.to(pos.dtype))[..., None]  # [..., 1]
        return (1.0 - w) * self.table[i0] + w * self.table[i0 + 1]

    def extra_repr(self) -> str:
        return f"frames={self.frames}, dim={self.dim}"
