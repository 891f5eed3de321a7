"""Depths on foreground rays that the views of nearby times agree with.

`foreground.points_on_rays` puts a point at a uniform depth on a ray through a foreground pixel: on a
small object most such points lie in empty space in front of or behind it. Here each ray gets `SAMPLES`
candidate depths, projected into the `NEIGHBOURS` training views nearest the ray's time (the other cameras
of the same frame in a synchronised capture, the next frames' cameras in a monocular one). Each view that
sees a candidate votes:

- *match*: a pixel within one of where it lands has the ray's colour (within FOREGROUND_THRESHOLD per
  channel): the same surface, seen again;
- *background*: every pixel within one of where it lands has the background colour, so nothing is there
  at that time (a visual hull's carving; the pixel of slack keeps points on a silhouette's edge);
- neither: something else is in front of it or behind it there (occlusion), no evidence either way.

The score is matches - BACKGROUND_WEIGHT x background votes, and a ray keeps one of its best-scored
candidates (drawn at random among ties), so a ray whose object moved off it in every neighbour still
gives a point. On a small object in front of a plain background the background votes do most of the work;
on a floor that is not the background colour (every candidate lands on floor somewhere) the colour
matches place the point on it.

`choose="cost"` ranks candidates by a photo-consistency cost instead (`photo_cost`: the colour difference
where the candidate lands, sampled between pixels, capped at COST_CAP, a view that does not see it counted
at the cap). Counting matches within a pixel of slack cannot tell depths apart on a texture of few colours:
on MuJoCo toss's checkered floor many wrong depths land on the right colour in every view and tie with the
true one (background points, 6,000 rays, 2 passes: |z| median / 75th / 90th percentile 0.028 / 0.133 /
0.297 by votes at 128 depths, 0.009 / 0.026 / 0.225 by cost at 256; on the floor within 1 of its centre
0.007 / 0.016 / 0.033). The far floor, whose squares are under a pixel, stays ambiguous either way. Nearer
points did not make better fits there: fourk4d's background points by cost 20.26 -> 18.68 dB held out, adcgs's
ray anchors 23.25 -> 23.17; neither uses it by default ("votes_cost" too: fourk4d 19.84).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from splat4d.cameras import sample_images
from splat4d.data.foreground import FOREGROUND_THRESHOLD, ForegroundRays, _box_span

NEIGHBOURS = 8
"""Training views nearest in time that judge a candidate (all views tied at the last one's distance too)."""
SAMPLES = 32
"""Candidate depths per ray (stratified over the ray's span inside the scene box)."""
BACKGROUND_WEIGHT = 2.0
"""A background vote outweighs a match (one clear view of the background carves a place)."""
CHOICES = ("votes", "cost", "votes_cost", "decisive")
"""How `consistent_points_on_rays` ranks a ray's candidate depths (see the module docstring)."""
DECISIVE_STRATA = 4
"""choose "decisive": the candidates more than this many strata from a ray's cheapest are its rivals."""
DECISIVE_GAP = 0.05
"""choose "decisive": a ray goes by photo cost when its cheapest candidate beats every rival by more than
this, by votes otherwise. MuJoCo toss background rays (128 depths, one pass): the gap's median is 0.075
within 1 of the floor's centre and 0.024 beyond, where the squares are under a pixel."""
VOTE_MARGIN = 2.0
"""choose "votes_cost": candidates within this many votes of a ray's best are ranked by photo cost."""
COST_CAP = 0.4
"""`photo_cost` counts a view's colour difference up to this (an occluded view costs no more than a miss)."""
_SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class _Images:
    """The training views' images as float [H, W, 3] tensors and masks of the pixels whose 3 x 3
    neighbourhood is all background colour, read once each."""

    def __init__(self, scene, views, threshold: float):
        self.scene, self.views, self.threshold = scene, views, threshold
        self.bg = torch.tensor(scene.background, dtype=torch.float32)
        self.cache: dict[int, tuple[Tensor, Tensor]] = {}

    def __call__(self, i: int) -> tuple[Tensor, Tensor]:
        if i not in self.cache:
            rgb = torch.from_numpy(self.scene.image_uint8(self.views[i])).float() / 255.0
            fg = ((rgb - self.bg).abs().amax(-1) > self.threshold).float()
            self.cache[i] = rgb, torch.nn.functional.max_pool2d(fg[None, None], 3, 1, 1)[0, 0] == 0
        return self.cache[i]


def colour_distance(rgb: Tensor, x: Tensor, y: Tensor, colors: Tensor) -> Tensor:
    """[n] the smallest per-channel-max difference between colours [n, 3] and the pixels of rgb [H, W, 3]
    within one of (x, y) [n] each (integer pixel coordinates inside the image; neighbours clamped to it)."""
    H, W = rgb.shape[:2]
    best = torch.full((len(x),), float("inf"), device="cpu")
    for dy, dx in _SHIFTS:
        yy, xx = (y + dy).clamp(0, H - 1), (x + dx).clamp(0, W - 1)
        best = torch.minimum(best, (rgb[yy, xx] - colors).abs().amax(-1))
    return best


def _neighbours(times: np.ndarray, t: float, k: int) -> np.ndarray:
    """Indices of the k views nearest t in time, plus any tied with the k-th."""
    dt = np.abs(times - t)
    if len(dt) <= k:
        return np.arange(len(dt))
    kth = np.partition(dt, k - 1)[k - 1]
    return np.nonzero(dt <= kth + 1e-9)[0]


def votes(points: Tensor, colors: Tensor, scene, views, which, images: _Images,
          threshold: float = FOREGROUND_THRESHOLD) -> tuple[Tensor, Tensor, Tensor]:
    """(match, background, seen) [N] each: how many of the views `which` (indices into `views`) see each
    point [N, 3] (in front, inside the image), in how many a pixel within one of it has its colour [N, 3],
    and in how many every pixel within one of it has the background colour."""
    match, background, seen = (torch.zeros(len(points)) for _ in range(3))
    for i in which:
        cam = scene.camera(views[int(i)])
        uv, z = cam.project(points.float())
        x, y = torch.floor(uv[0, :, 0]).long(), torch.floor(uv[0, :, 1]).long()
        inside = (z[0] > 1e-6) & (x >= 0) & (y >= 0) & (x < cam.width) & (y < cam.height)
        rgb, is_bg = images(int(i))
        xi, yi = x[inside], y[inside]
        match[inside] += (colour_distance(rgb, xi, yi, colors[inside].float()) <= threshold).float()
        background[inside] += is_bg[yi, xi].float()
        seen += inside.float()
    return match, background, seen


def photo_cost(points: Tensor, colors: Tensor, scene, views, which, images: _Images, cap: float = COST_CAP) -> Tensor:
    """[N] mean over the views `which` (indices into `views`) of the per-channel-max difference between each
    point's colour [N, 3] and the image where the point [N, 3] lands (bilinear, `cameras.sample_images`), capped
    at `cap`; a view that does not see the point (behind it, outside the image) counts `cap`."""
    total = torch.zeros(len(points))
    for i in which:
        rgb, _ = images(int(i))
        seen, inside = sample_images(points.float(), scene.camera(views[int(i)]), rgb[None])
        diff = (seen[:, 0] - colors).abs().amax(-1).clamp(max=cap)
        total += torch.where(inside[:, 0], diff, torch.full_like(diff, cap))
    return total / max(len(which), 1)


def decisive_cost(cost: Tensor, strata: int = DECISIVE_STRATA, gap: float = DECISIVE_GAP) -> Tensor:
    """[n] bool: rays whose cheapest candidate depth (cost [n, S], stratified along each ray) beats every
    candidate more than `strata` strata away from it by more than `gap`: the photo cost is decisive there."""
    s = torch.arange(cost.shape[1])
    cheapest = cost.argmin(1)
    away = (s[None] - cheapest[:, None]).abs() > strata
    rival = torch.where(away, cost, torch.full_like(cost, float("inf"))).amin(1)
    return rival - cost.amin(1) > gap


def consistent_points_on_rays(rays: ForegroundRays, scene, bounds: Tensor, n: int, generator: torch.Generator,
                              samples: int = SAMPLES, neighbours: int = NEIGHBOURS,
                              threshold: float = FOREGROUND_THRESHOLD, passes: int = 1,
                              choose: str = "votes") -> tuple[Tensor, Tensor, Tensor]:
    """n points on rays drawn uniformly from `rays` (as `points_on_rays`), each at the best of `samples`
    stratified depths inside the box `bounds` [2, 3], judged by the `neighbours` training views nearest the
    ray's time: by their `votes` (choose "votes"), the lowest `photo_cost` ("cost"), the lowest photo cost
    among the candidates within VOTE_MARGIN of the most votes ("votes_cost"), or by photo cost on the rays
    where it is decisive and by votes on the others ("decisive", `decisive_cost`, settled in the first
    pass); see the module docstring. Each further pass searches `samples` depths again within one stratum either side of the last
    pass's choice (a long ray in a big box needs it).
    -> (xyz [m, 3], rgb [m, 3], t [m]), m = n, or 0 when no ray crosses the box."""
    if choose not in CHOICES:
        raise ValueError(f"choose must be one of {', '.join(CHOICES)}, got {choose!r}")
    near, far = _box_span(rays.origins, rays.dirs, bounds.float())
    hit = far > near
    if n <= 0 or not bool(hit.any()):
        return torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0)
    o, d, c, t = rays.origins[hit], rays.dirs[hit], rays.colors[hit], rays.times[hit]
    near, far = near[hit], far[hit]
    idx = torch.randint(len(o), (n,), generator=generator, device="cpu")
    lo, hi = near[idx], far[idx]
    cols, times = c[idx], t[idx]
    views = scene.split("train")
    view_times = np.array([v.time for v in views])
    images = _Images(scene, views, threshold)
    by_cost = torch.full((n,), choose == "cost")  # "decisive": settled per ray in the first pass
    for k in range(max(passes, 1)):
        u = (torch.arange(samples) + torch.rand(n, samples, generator=generator, device="cpu")) / samples
        depth = lo[:, None] + u * (hi - lo)[:, None]  # [n, S]
        pts = o[idx, None] + depth[..., None] * d[idx, None]  # [n, S, 3]
        score, cost = torch.zeros(n, samples), torch.zeros(n, samples)
        for time in torch.unique(times).tolist():
            rows = (times == time).nonzero()[:, 0]
            which = _neighbours(view_times, time, neighbours)
            p, c = pts[rows].reshape(-1, 3), cols[rows].repeat_interleave(samples, 0)
            if choose != "cost":
                m, b, _ = votes(p, c, scene, views, which, images, threshold)
                score[rows] = (m - BACKGROUND_WEIGHT * b).reshape(len(rows), samples)
            if choose != "votes":
                cost[rows] = photo_cost(p, c, scene, views, which, images).reshape(len(rows), samples)
        if choose == "votes_cost":  # the cheapest of the candidates within VOTE_MARGIN of the most votes
            score = torch.where(score >= score.amax(1, keepdim=True) - VOTE_MARGIN, -cost, torch.full_like(cost, -1e9))
        else:
            if choose == "decisive" and k == 0:
                by_cost = decisive_cost(cost)
            score = torch.where(by_cost[:, None], -cost, score)
        best = score >= score.amax(1, keepdim=True) - 1e-6
        pick = torch.multinomial(best.float(), 1, generator=generator)[:, 0]
        chosen = depth[torch.arange(n), pick]
        step = (hi - lo) / samples
        lo, hi = torch.maximum(chosen - step, near[idx]), torch.minimum(chosen + step, far[idx])
    return pts[torch.arange(n), pick], cols, times


def static_points(points: Tensor, colors: Tensor, scene, max_views: int = 32, min_views: int = 4,
                  min_fraction: float = 0.5, threshold: float = FOREGROUND_THRESHOLD) -> Tensor:
    """[N] bool: points [N, 3] of colours [N, 3] (in [0, 1]) whose colour the training views spread over the
    whole capture agree with: of up to `max_views` of them, at least `min_views` see the point, at least
    `min_fraction` of those match its colour (`votes`; a surface point faces about half the cameras of a
    ring, the others see the object's far side) and at most a tenth see background there. Static content
    (a floor, a wall), not something passing through, whose place shows what is behind it at other times."""
    views = scene.split("train")
    which = np.unique(np.linspace(0, len(views) - 1, min(max_views, len(views))).round().astype(int))
    match, background, seen = votes(points, colors, scene, views, which, _Images(scene, views, threshold), threshold)
    return (seen >= min_views) & (match >= min_fraction * seen) & (background <= 0.1 * seen)
