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


class TimeTable(nn.Module):
    """Learnable time embedding: table Z [frames, dim] read at t in [0, 1] by 1-D linear interpolation.

    Nodes are evenly spaced with align_corners semantics: t = 0 reads row 0, t = 1 reads row frames-1, and
    t = k / (frames - 1) reads row k exactly. Times outside [0, 1] are clamped (border padding).

    Args:
        frames: number of rows (>= 1).
        dim: embedding width.
        init_std: rows start as N(0, init_std^2); 0 gives zeros.
    """

    def __init__(self, frames: int, dim: int, init_std: float = 0.1, device: torch.device | str | None = None):
        super().__init__()
        if frames < 1 or dim < 1:
            raise ValueError(f"frames and dim must be >= 1, got frames={frames} dim={dim}")
        self.frames, self.dim = int(frames), int(dim)
        self.table = nn.Parameter(torch.randn(self.frames, self.dim, device=device) * init_std)  # [frames, dim]

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
