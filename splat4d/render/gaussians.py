"""`rasterize`: differentiable 3D Gaussian splatting with gsplat's conventions and three backends.

- "cuda": gsplat's `rasterization()` (CUDA tensors; the `cuda` extra).
- "cpu": splat4d's own tiled numba kernels with a hand-written backward.
- "torch": a dense pure-torch oracle for small scenes (tests).
"auto" picks "cuda" for CUDA tensors when gsplat is importable, else "cpu".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.errors import ConfigError
from splat4d.fields.sh import eval_sh
from splat4d.render.composite import composite_cpu, composite_dense
from splat4d.render.projection import covariances, project_gaussians
from splat4d.render.projection_cpu import project_sh_cpu

BACKENDS = ("auto", "cpu", "torch", "cuda")


@dataclass
class RenderOutput:
    """What `rasterize` returns.

    Attributes:
        rgb: rendered colours (or features) composited on the background. [C, H, W, D]
        alpha: accumulated opacity 1 - T. [C, H, W, 1]
        depth: expected depth sum(w z) / alpha (0 where alpha is 0). [C, H, W, 1]
        meta: means2d [C, N, 2] (its .grad after backward drives densification), radii [C, N, 2],
            depths [C, N], conics [C, N, 3], visible [C, N] bool, weights [C, N] (blend weight summed
            over pixels; None when not computed), width, height, backend.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    meta: dict = field(default_factory=dict)


def gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown rasterizer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "cuda" if device.type == "cuda" and gsplat_available() else "cpu"
    if backend == "cuda" and not (device.type == "cuda" and gsplat_available()):
        raise ConfigError("backend 'cuda' needs CUDA tensors and gsplat (pip install 'splat4d[cuda]')")
    return backend


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, need not be normalised
    scales: Tensor,  # [N, 3] activated (exp'd)
    opacities: Tensor,  # [N] activated (sigmoid'd)
    colors: Tensor,  # [N, D] features, [C, N, D] per camera, or SH coefficients [N, K, 3]
    cameras: Cameras,
    background: Tensor | None = None,  # [D] or [C, D]
    sh_degree: int | None = None,
    backend: str = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    antialiased: bool = False,
    tile_size: int = 16,
    return_weights: bool = False,
    fused_cpu: bool = True,
) -> RenderOutput:
    """Render N Gaussians into C cameras.

    With `sh_degree` set, `colors` are SH coefficients [N, K, 3] and the colour seen from each camera is
    clamp_min(SH(dir) + 0.5, 0) as in gsplat. `antialiased` multiplies opacities by the eps2d
    compensation (gsplat's "antialiased" mode). `return_weights` fills meta["weights"]. `fused_cpu`
    (backend "cpu") projects and evaluates SH in one numba kernel (`projection_cpu`); False runs the
    torch ops of `projection` and `fields.sh`, which the "torch" backend always uses.
    """
    device = means.device
    backend = resolve_backend(backend, device)
    cams = cameras.to(device, means.dtype)
    C, N = len(cams), means.shape[0]
    if backend == "cuda":
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, cams, background, sh_degree, near_plane, far_plane, eps2d,
            antialiased, tile_size, return_weights,
        )

    if backend == "cpu" and fused_cpu and _fusable(means, cams):
        _check_colors(colors, C, sh_degree)
        sh = colors if sh_degree is not None else None
        radii, means2d, depths, conics, comps, feats = project_sh_cpu(
            means, quats, scales, cams.viewmats, cams.Ks, cams.width, cams.height, eps2d, near_plane, far_plane,
            sh, sh_degree,
        )
        if feats is None:
            feats = _features(means, colors, cams, None, radii)
    else:
        proj = project_gaussians(
            means, covariances(quats, scales), cams.viewmats, cams.Ks, cams.width, cams.height, eps2d, near_plane,
            far_plane,
        )
        radii, means2d, depths, conics, comps = proj.radii, proj.means2d, proj.depths, proj.conics, proj.compensations
        feats = _features(means, colors, cams, sh_degree, radii)  # [C, N, D]
    D = feats.shape[-1]
    opac = opacities[None].expand(C, N)
    if antialiased:
        opac = opac * comps
    bg = _background(background, C, D, feats)
    # depth rides along as one more feature channel, composited with a zero background
    feats_d = torch.cat([feats, depths[..., None]], dim=-1)
    bg_d = torch.cat([bg, torch.zeros_like(bg[:, :1])], dim=-1)
    if means2d.requires_grad:
        means2d.retain_grad()
    composite = composite_cpu if backend == "cpu" else composite_dense
    out, alpha, weights = composite(
        means2d, conics, opac, feats_d, bg_d, radii, depths, cams.width, cams.height, tile_size
    )
    depth = torch.where(alpha > 0, out[..., D:] / alpha.clamp_min(1e-10), torch.zeros_like(alpha))
    meta = dict(
        means2d=means2d, radii=radii, depths=depths, conics=conics,
        visible=(radii > 0).all(-1), weights=weights if return_weights else None,
        width=cams.width, height=cams.height, backend=backend,
    )
    return RenderOutput(out[..., :D], alpha, depth, meta)


def _fusable(means: Tensor, cams: Cameras) -> bool:
    """The fused CPU projection takes CPU float32/float64 tensors and fixed cameras."""
    return (means.device.type == "cpu" and means.dtype in (torch.float32, torch.float64)
            and not cams.viewmats.requires_grad and not cams.Ks.requires_grad)


def _check_colors(colors: Tensor, C: int, sh_degree: int | None) -> None:
    if sh_degree is None:
        if colors.dim() == 2 or (colors.dim() == 3 and colors.shape[0] == C):
            return
        raise ConfigError(f"colors must be [N, D] or [C, N, D] without sh_degree, got {tuple(colors.shape)}")
    if colors.dim() != 3 or colors.shape[-1] != 3:
        raise ConfigError(f"SH colors must be [N, K, 3], got {tuple(colors.shape)}")


def _features(means: Tensor, colors: Tensor, cams: Cameras, sh_degree: int | None, radii: Tensor) -> Tensor:
    C, N = len(cams), means.shape[0]
    _check_colors(colors, C, sh_degree)
    if sh_degree is None:
        return colors[None].expand(C, N, colors.shape[-1]) if colors.dim() == 2 else colors
    dirs = means[None] - cams.centers[:, None]  # [C, N, 3]
    rgb = eval_sh(sh_degree, colors[None].expand(C, -1, -1, -1), dirs)
    return torch.clamp_min(rgb + 0.5, 0.0)


def _background(background: Tensor | None, C: int, D: int, like: Tensor) -> Tensor:
    if background is None:
        return torch.zeros(C, D, dtype=like.dtype, device=like.device)
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if bg.dim() == 1:
        bg = bg[None].expand(C, D)
    if bg.shape != (C, D):
        raise ConfigError(f"background must be [{D}] or [{C}, {D}], got {tuple(bg.shape)}")
    return bg


def _rasterize_gsplat(
    means, quats, scales, opacities, colors, cams, background, sh_degree, near_plane, far_plane, eps2d,
    antialiased, tile_size, return_weights,
) -> RenderOutput:
    from gsplat import rasterization

    C = len(cams)
    D = 3 if sh_degree is not None else colors.shape[-1]
    bg = None if background is None else _background(background, C, D, means)
    kwargs = dict(
        viewmats=cams.viewmats, Ks=cams.Ks, width=cams.width, height=cams.height, near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, tile_size=tile_size, packed=False,
        rasterize_mode="antialiased" if antialiased else "classic",
    )
    # gsplat appends the zero depth background itself in "RGB+ED" mode
    render, alpha, meta = rasterization(
        means, quats, scales, opacities, colors, backgrounds=bg, render_mode="RGB+ED", **kwargs
    )
    means2d = meta["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"]
    if radii.dim() == 2:  # older gsplat: one radius per Gaussian
        radii = radii[..., None].expand(-1, -1, 2)
    weights = None
    if return_weights:
        # d(sum of a rendered all-ones channel)/d(that channel of Gaussian i) = sum over pixels of alpha_i T_i
        ones = torch.ones(C, means.shape[0], 1, device=means.device, dtype=means.dtype, requires_grad=True)
        kw = dict(kwargs, sh_degree=None)
        r1, _, _ = rasterization(means.detach(), quats.detach(), scales.detach(), opacities.detach(), ones, **kw)
        (weights,) = torch.autograd.grad(r1.sum(), ones)
        weights = weights[..., 0]
    meta_out = dict(
        means2d=means2d, radii=radii, depths=meta["depths"], conics=meta["conics"],
        visible=(radii > 0).all(-1), weights=weights, width=cams.width, height=cams.height, backend="cuda",
    )
    return RenderOutput(render[..., :D], alpha, render[..., D:], meta_out)
