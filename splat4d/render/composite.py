"""Alpha compositing of projected Gaussians: the CPU tiled kernels (autograd) and the dense torch oracle.

Both take screen-space Gaussians of C cameras and D-channel features and return
(out [C, H, W, D], alpha [C, H, W, 1], weights [C, N]): `weights` is each Gaussian's blend weight
alpha_i * T_i summed over the pixels it reaches (ADC-GS's significance, pruning by contribution);
it carries no gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from splat4d.render import cpu_kernels as K

ALPHA_MIN, ALPHA_MAX, T_MIN = K.ALPHA_MIN, K.ALPHA_MAX, K.T_MIN


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).contiguous().cpu().numpy()


class _CompositeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, feats, background, radii, depths, width, height, tile_size):
        tiles_x = math.ceil(width / tile_size)
        tiles_y = math.ceil(height / tile_size)
        m2d, con, opa, fea, bg = (_np(t) for t in (means2d, conics, opacities, feats, background))
        rad = radii.detach().cpu().numpy().astype(np.int32)
        offsets, ids = K.bin_tiles(m2d, rad, _np(depths), tile_size, tiles_x, tiles_y)
        out, T, last, wslots = K.composite_forward(
            m2d, con, opa, fea, bg, rad, offsets, ids, height, width, tile_size, tiles_x
        )
        C, N = opa.shape
        weights = K.sum_per_gaussian(offsets, ids, C, N, wslots[:, None])[..., 0]
        ctx.save_for_backward(means2d, conics, opacities, feats, background)
        ctx.arrays = (m2d, con, opa, fea, bg, rad, offsets, ids, T, last)
        ctx.dims = (width, height, tile_size, tiles_x)
        dtype, dev = feats.dtype, feats.device
        alpha = torch.from_numpy(1.0 - T).to(dev, dtype)[..., None]
        weights = torch.from_numpy(weights).to(dev, dtype)
        ctx.mark_non_differentiable(weights)
        return torch.from_numpy(out).to(dev, dtype), alpha, weights

    @staticmethod
    def backward(ctx, g_out, g_alpha, _g_weights):
        m2d, con, opa, fea, bg, rad, offsets, ids, T, last = ctx.arrays
        width, height, tile_size, tiles_x = ctx.dims
        C, N, D = fea.shape
        g_out_np = _np(g_out) if g_out is not None else np.zeros((C, height, width, D))
        g_alpha_np = _np(g_alpha[..., 0]) if g_alpha is not None else np.zeros((C, height, width))
        gm, gc, go, gf, gbg = K.composite_backward(
            m2d, con, opa, fea, bg, rad, offsets, ids, T, last, g_out_np, g_alpha_np, height, width, tile_size, tiles_x
        )
        per_g = K.sum_per_gaussian(offsets, ids, C, N, np.concatenate([gm, gc, go[:, None], gf], axis=1))
        ref = ctx.saved_tensors[3]
        t = torch.from_numpy(per_g).to(ref.device, ref.dtype)
        g_means2d, g_conics, g_opac, g_feats = t[..., 0:2], t[..., 2:5], t[..., 5], t[..., 6:]
        g_bg = torch.from_numpy(gbg).to(ref.device, ref.dtype)
        return g_means2d, g_conics, g_opac, g_feats, g_bg, None, None, None, None, None


def composite_cpu(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [C, N]
    feats: Tensor,  # [C, N, D]
    background: Tensor,  # [C, D]
    radii: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tiled compositing with numba kernels and a hand-written backward."""
    return _CompositeCPU.apply(means2d, conics, opacities, feats, background, radii, depths, width, height, tile_size)


def composite_dense(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    feats: Tensor,
    background: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """Every Gaussian against every pixel in plain torch: slow, obviously correct, differentiable by autograd."""
    C, N, D = feats.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype, device=means2d.device) + 0.5,
        torch.arange(width, dtype=means2d.dtype, device=means2d.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs, ys], -1).reshape(-1, 2)  # [P, 2]
    outs, alphas, weights = [], [], []
    for c in range(C):
        order = torch.argsort(depths[c].detach(), stable=True)
        keep = (radii[c, order] > 0).all(-1)
        order = order[keep]
        m, con, o, f = means2d[c, order], conics[c, order], opacities[c, order], feats[c, order]
        d = m[:, None, :] - pix[None]  # [n, P, 2]
        sigma = 0.5 * (con[:, None, 0] * d[..., 0] ** 2 + con[:, None, 2] * d[..., 1] ** 2) + con[:, None, 1] * d[
            ..., 0
        ] * d[..., 1]
        alpha = torch.clamp(o[:, None] * torch.exp(-sigma), max=ALPHA_MAX)
        skip = (sigma < 0) | (alpha < ALPHA_MIN)
        alpha = torch.where(skip, torch.zeros_like(alpha), alpha)  # [n, P]
        trans = torch.cumprod(1 - alpha, dim=0)  # transmittance after each Gaussian
        stopped = torch.cumsum((trans <= T_MIN).to(torch.int32), dim=0) > 0  # this one and all after: not drawn
        alpha = torch.where(stopped, torch.zeros_like(alpha), alpha)
        T_before = torch.cat([torch.ones_like(alpha[:1]), torch.cumprod(1 - alpha, dim=0)[:-1]], dim=0)
        w = alpha * T_before  # [n, P]
        T_final = 1 - w.sum(0)
        img = (w[..., None] * f[:, None, :]).sum(0) + T_final[:, None] * background[c]
        outs.append(img.reshape(height, width, D))
        alphas.append((1 - T_final).reshape(height, width, 1))
        wc = torch.zeros(N, dtype=feats.dtype, device=feats.device)
        wc[order] = w.detach().sum(1)
        weights.append(wc)
    return torch.stack(outs), torch.stack(alphas), torch.stack(weights)
