"""A static point set for what a capture shows besides its masked subject (a floor, a set).

Carving from masks keeps the subject only; carving from "differs from the background colour" turns a floor
that reaches past the scene box into a thick slab of wrong points (MuJoCo toss: held-out 9.4 dB). These
points come from rays through training pixels that differ from the background colour but lie outside the
masks, each at the depth the same time's other cameras agree with (`data.ray_depths` votes, two passes), kept
where views spread over the whole capture agree on its colour (`static_points`). Depths are searched in the scene box
grown by BOX_GROWTH on every side, since such a set usually reaches beyond the subject's box (MuJoCo toss:
grown by its size, the far part of the floor stayed black).
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
