"""Points on the surfaces a frame's cameras see, inside its visual hull.

A visual hull exceeds what it holds wherever no camera looks between the objects: on the synthetic default
scene (12 cameras at 15 and 40 degrees elevation) the hull of the ground disc is a mound above it and the
objects' hulls are joined by phantom volumes, so points resampled from the hull's surface lie a median 3.22
fine voxels from the true surfaces, 17 % of them within 2 (frame 0, 20k points;
benchmarks/fourk4d_points.py). A point can move about one voxel in training, so most of them never reach a
surface.

Here each point lies on a ray through a foreground pixel of one of the frame's cameras (drawn uniformly over
all of them), at the depth inside the hull where the most of the frame's cameras see the pixel's colour:
within `threshold` per channel anywhere in the 3 x 3 pixels around where the depth lands (the test of
`data.ray_depths.colour_distance`). SAMPLES stratified depths between where the ray enters the hull and where it
leaves it, then as many again within one stratum either side of the best (a second pass); ties are drawn at
random. On the same frame: a median 1.14 voxels from the true surfaces, 75 % within 2. Occlusion is not
modelled (a camera that sees something else in front of the surface does not vote for it), and a ray that
misses the hull gives no point.

A few points land far off (a colour that matches elsewhere too, e.g. on a two-colour checker), alone in
space where the others crowd on the surfaces: a point whose OUTLIER_NEIGHBOUR-th nearest point lies beyond
OUTLIER_FACTOR x the median of that distance is dropped and another ray's point takes its place (on that
frame the 99th percentile of the distance to the surfaces 9.7 -> 5.0 voxels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.foreground import FOREGROUND_THRESHOLD, _box_span
from splat4d.data.ray_depths import colour_distance

SAMPLES = 32
"""Candidate depths per ray and pass."""
PASSES = 2
"""Searches per ray; each after the first within one stratum either side of the last one's choice."""
OUTLIER_NEIGHBOUR = 8
"""Which nearest neighbour's distance tells a lone point."""
OUTLIER_FACTOR = 1.5
"""A point whose OUTLIER_NEIGHBOUR-th nearest point is further than this x the median such distance is dropped."""


class HullGrid:
    """Whether points lie inside a carved hull (its kept fine voxels on the grid `carve_frame` used)."""

    def __init__(self, voxels: Tensor, voxel_size: float, bounds: Tensor):
        self.lo, self.size = bounds[0].float(), float(voxel_size)
        cells = torch.round((voxels.float() - self.lo) / self.size - 0.5).long()
        self.dims = cells.amax(0) + 1
        self.occ = torch.zeros(*self.dims.tolist(), dtype=torch.bool, device="cpu")
        self.occ[cells[:, 0], cells[:, 1], cells[:, 2]] = True

    def __call__(self, points: Tensor) -> Tensor:
        """[...] bool for points [..., 3]."""
        q = torch.floor((points - self.lo) / self.size).long()
        ok = (q >= 0).all(-1) & (q < self.dims).all(-1)
        q = torch.minimum(q.clamp(min=0), self.dims - 1)
        return ok & self.occ[q[..., 0], q[..., 1], q[..., 2]]

    def span(self, o: Tensor, d: Tensor, bounds: Tensor) -> tuple[Tensor, Tensor]:
        """(enter, leave) [R] distances along rays o + s d between the first and the last half-voxel step
        inside the hull; leave < enter where a ray never enters it."""
        near, far = _box_span(o, d, bounds.float())
        step = self.size / 2
        steps = int(torch.ceil((far - near).clamp(min=0).max() / step)) + 1 if len(o) else 1
        s = near[:, None] + step * torch.arange(steps, dtype=o.dtype, device="cpu")[None]  # [R, S]
        hit = self(o[:, None] + s[..., None] * d[:, None]) & (s <= far[:, None])
        any_hit = hit.any(1)
        first = hit.float().argmax(1)
        last = steps - 1 - hit.flip(1).float().argmax(1)
        enter = near + (first.to(o.dtype) - 0.5) * step
        leave = torch.where(any_hit, near + (last.to(o.dtype) + 0.5) * step, enter - 1.0)
        return enter, leave


def colour_matches(points: Tensor, colors: Tensor, cams: Cameras, images: Tensor,
                   threshold: float = FOREGROUND_THRESHOLD) -> Tensor:
    """[N] how many of the cameras see points [N, 3] (in front, inside the image) with a pixel within one
    of where they land that has their colour [N, 3] (every channel within `threshold`). images [C, H, W, 3]."""
    uv, z = cams.project(points)
    C, H, W, _ = images.shape
    x, y = torch.floor(uv[..., 0]).long(), torch.floor(uv[..., 1]).long()
    seen = (z > 1e-6) & (x >= 0) & (y >= 0) & (x < W) & (y < H)
    count = torch.zeros(len(points), dtype=torch.long, device="cpu")
    for c in range(C):
        s = seen[c]
        count[s] += (colour_distance(images[c], x[c, s], y[c, s], colors[s]) <= threshold).long()
    return count


def surface_points(cams: Cameras, images: Tensor, masks: Tensor, hull: HullGrid, bounds: Tensor, n: int,
                   generator: torch.Generator, samples: int = SAMPLES, passes: int = PASSES,
                   threshold: float = FOREGROUND_THRESHOLD, chunk: int = 2048) -> Tensor:
    """n points [n, 3] on rays through the masks' pixels at the depths in the hull the frame's cameras agree
    on (see the module docstring); drawn with replacement when fewer rays than n enter the hull, and [0, 3]
    when none does.

    Args:
        cams: the frame's C cameras; images: [C, H, W, 3] float in [0, 1]; masks: [C, H, W] bool.
        hull: the frame's `HullGrid`; bounds: [2, 3] the box it was carved in.
    """
    cams = cams.to(dtype=torch.float32)
    o, d = cams.pixel_rays()
    sel = masks.reshape(-1)
    o, d, c = o.reshape(-1, 3)[sel], d.reshape(-1, 3)[sel], images.reshape(-1, 3).float()[sel]
    if n <= 0 or len(o) == 0:
        return torch.zeros(0, 3, device="cpu")
    pick = torch.randint(len(o), (2 * n,), generator=generator, device="cpu")  # some rays miss the hull
    o, d, c = o[pick], d[pick], c[pick]
    enter, leave = zip(*(hull.span(o[i:i + chunk], d[i:i + chunk], bounds) for i in range(0, len(o), chunk)))
    enter, leave = torch.cat(enter), torch.cat(leave)
    ok = (leave > enter).nonzero()[:, 0]
    if len(ok) == 0:
        return torch.zeros(0, 3, device="cpu")
    m = n + n // 4  # a quarter more than wanted: the lone ones are dropped
    ok = ok[:m] if len(ok) >= m else ok[torch.randint(len(ok), (m,), generator=generator, device="cpu")]
    o, d, c, lo, hi = o[ok], d[ok], c[ok], enter[ok], leave[ok]
    out = []
    for i in range(0, m, chunk):
        out.append(_best_depths(o[i:i + chunk], d[i:i + chunk], c[i:i + chunk], lo[i:i + chunk], hi[i:i + chunk],
                                cams, images.float(), hull, generator, samples, passes, threshold))
    pts = torch.cat(out)
    pts = pts[~lone_points(pts, chunk=chunk)]
    if len(pts) >= n:
        return pts[:n]
    return pts[torch.randint(len(pts), (n,), generator=generator, device="cpu")]


def point_spacing(points: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """[M] distance from each point [M, 3] to its k-th nearest other point (0 with fewer than k + 1)."""
    if len(points) <= k:
        return points.new_zeros(len(points))
    return torch.cat([torch.cdist(points[i:i + chunk], points).topk(k + 1, dim=1, largest=False).values[:, k]
                      for i in range(0, len(points), chunk)])


def lone_points(points: Tensor, k: int = OUTLIER_NEIGHBOUR, factor: float = OUTLIER_FACTOR, chunk: int = 2048) -> Tensor:
    """[N] bool: points [N, 3] whose k-th nearest other point is further than factor x the median such
    distance (none with k or fewer points)."""
    kth = point_spacing(points, k, chunk)
    return kth > factor * kth.median() if len(points) else kth.bool()


def _best_depths(o, d, c, lo, hi, cams, images, hull, generator, samples, passes, threshold) -> Tensor:
    r = len(o)
    enter, leave = lo, hi
    for _ in range(max(passes, 1)):
        u = (torch.arange(samples, device="cpu") + torch.rand(r, samples, generator=generator, device="cpu")) / samples
        depth = lo[:, None] + u * (hi - lo)[:, None]  # [r, S]
        pts = o[:, None] + depth[..., None] * d[:, None]  # [r, S, 3]
        score = colour_matches(pts.reshape(-1, 3), c.repeat_interleave(samples, 0), cams, images, threshold)
        score = score.reshape(r, samples).float().masked_fill(~hull(pts), -1.0)
        best = score >= score.amax(1, keepdim=True)
        choice = torch.multinomial(best.float(), 1, generator=generator)[:, 0]
        chosen = depth[torch.arange(r, device="cpu"), choice]
        step = (hi - lo) / samples
        lo, hi = torch.maximum(chosen - step, enter), torch.minimum(chosen + step, leave)
    return pts[torch.arange(r, device="cpu"), choice]
