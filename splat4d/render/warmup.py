"""Compile (or load from numba's cache) the CPU kernels once (fused projection + SH, rasterizer, HexPlane
lookup and regularisers, SSIM):
`python -m splat4d.render.warmup`.

Run before the test suite so a cold JIT (~20 s) is paid once, not inside a timed test.
"""

from __future__ import annotations

import time

import torch


def warmup() -> float:
    from splat4d.cameras import Cameras
    from splat4d.render import rasterize

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    n = 64
    means = (torch.rand(n, 3, generator=g, device="cpu") - 0.5).requires_grad_()
    quats = torch.randn(n, 4, generator=g, device="cpu")
    scales = torch.full((n, 3), 0.05, device="cpu")
    opac = torch.full((n,), 0.5, device="cpu")
    colors = torch.rand(n, 3, generator=g, device="cpu")
    cams = Cameras.look_at([0.0, -3.0, 0.0], [0.0, 0.0, 0.0], width=32, height=24)
    out = rasterize(means, quats, scales, opac, colors, cams, backend="cpu", return_weights=True)
    (out.rgb.sum() + out.alpha.sum()).backward()

    from splat4d.fields.hexplane import HexPlane

    field = HexPlane([[-1.0] * 3, [1.0] * 3], resolution=(4, 4, 4, 3), out_dim=4, multires=(1, 2), backend="cpu")
    (field(means, 0.5).sum() + field.regularisation(1.0, 1.0, 1.0)).backward()

    from splat4d.train.ssim_cpu import ssim_cpu

    img = torch.rand(1, 12, 14, 3, generator=g, device="cpu").requires_grad_()
    ssim_cpu(img, torch.rand(1, 12, 14, 3, generator=g, device="cpu")).backward()
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"splat4d CPU kernels ready in {warmup():.1f} s")
