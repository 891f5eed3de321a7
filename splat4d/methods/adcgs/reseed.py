"""New anchors where a training view shows something the model does not draw (not in the paper).

Anchor growth (eq. 11) spawns anchors next to primitives with large gradients, so it can only add
detail where something is drawn already. When every anchor of a stretch of time is pruned (the shared
opacity network lowers all primitives at once; on D-NeRF collision 3,700 of 3,721 anchors went in one
refinement), nothing there is drawn, nothing gets a gradient and the objects of those frames stay
missing for the rest of the run. `MissedRays` keeps, from the training steps between two refinements,
rays through pixels that differ from the background but render almost transparent; `seed_anchors` puts
anchors on some of them at the depths the nearby views agree with (`data.ray_depths`), at their view's
time, with the features of the most opaque anchor (so that its primitives are drawn from the start).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from splat4d.data.foreground import FOREGROUND_THRESHOLD, ForegroundRays

MISSED_ALPHA = 0.5
"""A foreground pixel whose rendered alpha is below this is missed."""
RAYS_PER_VIEW = 64
"""Most missed rays kept from one training view."""
MAX_RAYS = 8192
"""Most missed rays kept between two refinements (the oldest go first)."""


class MissedRays:
    """Rays through missed foreground pixels of the views trained since the last refinement."""

    def __init__(self):
        self.parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self.count = 0

    def note(self, cameras, times: Tensor, images: Tensor, alphas: Tensor, background: Tensor,
             generator: torch.Generator) -> None:
        """images [C, H, W, 3] and rendered alphas [C, H, W] of the views `cameras` at `times` [C]."""
        fg = (images - background.to(images)).abs().amax(-1) > FOREGROUND_THRESHOLD
        missed = (fg & (alphas.detach() < MISSED_ALPHA)).cpu()
        for i in range(len(cameras)):
            ys, xs = missed[i].nonzero(as_tuple=True)
            if len(ys) == 0:
                continue
            pick = torch.randperm(len(ys), generator=generator, device="cpu")[:RAYS_PER_VIEW]
            ys, xs = ys[pick], xs[pick]
            cam = cameras[i].to("cpu")
            pix = torch.stack([xs.float() + 0.5, ys.float() + 0.5], -1)[None]
            far = cam.unproject(pix, torch.ones(1, len(ys), device="cpu"))[0]
            origin = cam.centers[0].expand_as(far)
            dirs = torch.nn.functional.normalize(far - origin, dim=-1)
            self.parts.append((origin, dirs, images[i, ys.to(images.device), xs.to(images.device)].detach().float().cpu(),
                               torch.full((len(ys),), float(times[i]), device="cpu")))
            self.count += len(ys)
        while self.count > MAX_RAYS and len(self.parts) > 1:
            self.count -= len(self.parts.pop(0)[0])

    def take(self) -> ForegroundRays | None:
        """The rays noted since the last take (None when there are none); starts a new collection."""
        if not self.parts:
            return None
        o, d, c, t = (torch.cat(x) for x in zip(*self.parts))
        self.parts, self.count = [], 0
        return ForegroundRays(o, d, c, t, 0.0)


def seed_anchors(field, rays: ForegroundRays, scene, bounds: Tensor, n: int, voxel: float, donor: int,
                 clone_t_scale: float, generator: torch.Generator, ray_depths: str = "consistent") -> dict[str, Tensor]:
    """Rows of up to n new anchors (field names) on `rays` at consistent depths (ADCGSConfig.ray_depths
    "cost": by photo cost, otherwise by votes): positions, the ray's colour,
    Sigma_v of the initial voxel, the features f_v / f_g of anchor `donor`, and with a temporal opacity the
    ray's time and width clone_t_scale."""
    from splat4d.data.ray_depths import consistent_points_on_rays

    pts, cols, times = consistent_points_on_rays(rays, scene, bounds, n, generator,
                                                 choose="cost" if ray_depths == "cost" else "votes")
    m = len(pts)
    dev = field.anchors.device
    out = {"anchors": pts.to(dev), "log_cov": torch.full((m, 6), math.log(voxel), device=dev), "colors": cols.to(dev),
           "f_v": field.f_v[donor].detach().expand(m, -1).clone(), "f_g": field.f_g[donor].detach().expand(m, -1, -1).clone()}
    if field.temporal:
        out["t_means"] = times.to(dev)
        out["t_log_scales"] = torch.full((m,), math.log(clone_t_scale), device=dev)
    if field.velocity:  # the donor moves with something else
        out["t_velocity"] = torch.zeros(m, 3, device=dev)
    return out


def gather_rows(rows: dict[str, Tensor], n_max: int) -> dict[str, Tensor]:
    """Every data-parallel rank's new rows (at most n_max each), in rank order, on every rank: the ranks
    saw different views, and all must edit the model alike. The rows as they are on one process."""
    from splat4d.train import distributed

    size = distributed.world_size()
    if size == 1:
        return rows
    me = distributed.rank()
    first = next(iter(rows.values()))
    counts = torch.zeros(size, device=first.device)
    counts[me] = len(first)
    distributed.all_reduce_sum_(counts)
    out = {}
    for name, v in rows.items():
        buf = v.new_zeros((size, n_max, *v.shape[1:]))
        buf[me, : len(v)] = v
        distributed.all_reduce_sum_(buf)
        out[name] = torch.cat([buf[r, : int(counts[r])] for r in range(size)])
    return out
