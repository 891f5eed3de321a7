"""A static point set for what a capture shows besides its masked subject (a floor, a set).

Carving from masks keeps the subject only; carving from "differs from the background colour" turns a floor
that reaches past the scene box into a thick slab of wrong points (MuJoCo toss: held-out 9.4 dB). These
points come from rays through training pixels that differ from the background colour but lie outside the
masks, each at the depth the same time's other cameras agree with (`data.ray_depths` votes, two passes), kept
where views spread over the whole capture agree on its colour (`static_points`). Depths are searched in the scene box
grown by BOX_GROWTH on every side, since such a set usually reaches beyond the subject's box (MuJoCo toss:
grown by its size, the far part of the floor stayed black).

Voted depths scatter about a floor (MuJoCo toss: a median 0.015 and a 90th percentile 0.28 off it, the scene box
2.3 wide), and from a held-out camera each misplaced point shows its colour in the wrong place. Where at least
PLANE_SHARE of the points lie on one plane (`dominant_plane`), those near it or below it move onto it and
become discs across it (`background_shape`): toss held out 20.56 -> 25.06 dB, the floor's pixels 19.91 -> 25.04.
"""

from __future__ import annotations

import torch
from torch import Tensor

from splat4d.data.foreground import foreground_rays
from splat4d.data.ray_depths import consistent_points_on_rays, static_points

BOX_GROWTH = 2.0
"""Each side of the search box moves out by this fraction of the scene box's size."""
CHOOSE = "votes"
"""How a ray's depth is chosen (`data.ray_depths.consistent_points_on_rays`). On MuJoCo toss (3000
iterations, held out) "votes" 20.26 dB, "cost" 18.68, "votes_cost" 19.84: by photo cost the near floor
fits better (the nearer half of the floor's image rows +1.0 to +1.9 dB) and the far floor worse (its
squares under a pixel; the farther half -1.1 to -3.5 dB; quarters of the rows of 24 test images)."""
CANDIDATES = 3
"""Rays tried per point wanted (some fail the whole-capture colour test)."""
SAMPLES = 128
"""Candidate depths per ray and pass (`consistent_points_on_rays`). On MuJoCo toss (a floor at z = 0 seen to
far past the scene box), median / 75th / 90th percentile of |z| over 6,000 points: ranked by votes, 32
samples 0.040 / 0.201 / 0.489, 128 0.028 / 0.133 / 0.297; by photo cost, 128 0.011 / 0.037 / 0.243, 256
0.009 / 0.026 / 0.225 (scene box 2.3 wide; `benchmarks/fourk4d_points.py`). Photo cost is nearer the floor
yet held-out PSNR fell (`CHOOSE`)."""


def background_points(scene, n: int, generator: torch.Generator) -> Tensor:
    """Up to n static points [m, 3] outside the masked subject (none when the views have no masks or show
    nothing besides it)."""
    rays = foreground_rays(scene, outside_masks=True)
    if n <= 0 or len(rays.origins) == 0:
        return torch.zeros(0, 3, device="cpu")
    b = scene.bounds.float()
    box = torch.stack([b[0] - BOX_GROWTH * (b[1] - b[0]), b[1] + BOX_GROWTH * (b[1] - b[0])])
    pts, cols, _ = consistent_points_on_rays(rays, scene, box, CANDIDATES * n, generator, samples=SAMPLES, passes=2,
                                            choose=CHOOSE)
    keep = static_points(pts, cols, scene)
    return pts[keep][:n]


NORMAL_NEIGHBOURS = 32
"""Points whose spread gives a background point's plane (`plane_normals`)."""
FLATNESS = 0.3
"""A neighbourhood is a plane when its least variance is below FLATNESS x its middle one. On MuJoCo toss's
20,000 trained background points (a checkered floor), 32 neighbours: 52 % flat at 0.3, 92 % of those
within 26 degrees of the floor's normal (16 neighbours: 77 %)."""


def plane_normals(points: Tensor, k: int = NORMAL_NEIGHBOURS, flatness: float = FLATNESS, chunk: int = 2048) -> Tensor:
    """[M, 3] unit normal of the plane through each point's k nearest points [M, 3] (their covariance's least
    axis), or a zero row where they do not lie on a plane (a corner, a rod, a blob) or are fewer than 3."""
    out = points.new_zeros(points.shape)
    if len(points) < 3:
        return out
    k = min(k, len(points))
    for i in range(0, len(points), chunk):
        near = torch.cdist(points[i:i + chunk], points).topk(k, dim=1, largest=False).indices  # itself included
        nb = points[near]  # [c, k, 3]
        d = nb - nb.mean(1, keepdim=True)
        evals, evecs = torch.linalg.eigh(d.transpose(1, 2) @ d / k)  # ascending
        flat = evals[:, 0] < flatness * evals[:, 1]
        out[i:i + chunk] = torch.where(flat[:, None], evecs[:, :, 0], torch.zeros_like(evecs[:, :, 0]))
    return out


PLANE_TOLERANCE = 0.01
"""A point lies on a candidate plane within this fraction of the scene box's diagonal (`dominant_plane`)."""
PLANE_SHARE = 0.3
"""A plane is the set's floor when at least this share of its points lie on it."""
PLANE_BAND = 0.1
"""Points nearer the floor than this fraction of the scene box's diagonal on the cameras' side, and every
point below it, are moved onto it (`onto_plane`)."""


def dominant_plane(points: Tensor, tolerance: float, generator: torch.Generator, trials: int = 256,
                   share: float = PLANE_SHARE) -> tuple[Tensor, Tensor] | None:
    """(unit normal [3], offset []) of the plane n.x = offset that the most points [M, 3] lie on within
    `tolerance` (RANSAC over `trials` triples, refit to its points), or None when under `share` of them do."""
    if len(points) < 3:
        return None
    tri = points[torch.randint(len(points), (trials, 3), generator=generator, device="cpu").to(points.device)]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ok = n.norm(dim=1) > 1e-12
    if not bool(ok.any()):
        return None
    n = n[ok] / n[ok].norm(dim=1, keepdim=True)
    off = (n * tri[ok, 0]).sum(1)
    count = torch.stack([((points @ ni - oi).abs() < tolerance).sum() for ni, oi in zip(n, off)])
    best = int(count.argmax())
    on = (points @ n[best] - off[best]).abs() < tolerance
    if int(on.sum()) < share * len(points):
        return None
    centre = points[on].mean(0)
    d = points[on] - centre
    normal = torch.linalg.eigh(d.T @ d)[1][:, 0]
    return normal, (normal * centre).sum()


def onto_plane(points: Tensor, normal: Tensor, offset: Tensor, eyes: Tensor, band: float) -> tuple[Tensor, Tensor]:
    """Points [M, 3] moved onto the plane n.x = offset where they lie within `band` of it on the side of the
    camera centres `eyes` [C, 3], or beyond it (an opaque floor hides everything below it). -> (points [M, 3],
    moved [M] bool); nothing moves when the cameras are not all on one side of the plane (it is no floor)."""
    side = eyes @ normal - offset
    if not (bool((side > 0).all()) or bool((side < 0).all())):
        return points, torch.zeros(len(points), dtype=torch.bool, device=points.device)
    if float(side.mean()) < 0:
        normal, offset = -normal, -offset
    h = points @ normal - offset
    moved = h < band
    return torch.where(moved[:, None], points - h[:, None] * normal, points), moved


def background_shape(points: Tensor, bounds: Tensor, eyes: Tensor, discs: bool, plane: bool,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(points [M, 3], normals [M, 3]) of a background set: with `plane`, the points near or below its
    dominant plane (a floor; cameras all on one side of it) moved onto it with its normal; with `discs`, the others the normal of their
    neighbours' plane (`plane_normals`); zero rows elsewhere (round points)."""
    normals = points.new_zeros(points.shape)
    if discs:
        normals = plane_normals(points)
    if plane:
        diag = float((bounds[1] - bounds[0]).norm())
        found = dominant_plane(points, PLANE_TOLERANCE * diag, generator)
        if found is not None:
            points, moved = onto_plane(points, *found, eyes, PLANE_BAND * diag)
            normals = torch.where(moved[:, None], found[0].expand_as(points), normals)
    return points, normals
