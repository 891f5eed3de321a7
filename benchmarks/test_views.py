"""Test views of several run folders side by side with the ground truth, one row per view:
run 1 | run 2 | ... | ground truth. For the pictures in docs/benchmarks.md.

Usage: python benchmarks/test_views.py --runs RUN [RUN ...] --out docs/images/NAME.png [--views 0 5 10]
(runs must share a scene; the scene is read from the first run's config.yaml)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

from splat4d.data import load_scene
from splat4d.errors import Splat4DError
from splat4d.io.images import image_grid, save_image
from splat4d.train.evaluate import eval_split
from splat4d.train.run import load_run, run_data_config


@dataclass
class TestViews:
    runs: tuple[Path, ...]
    """Run folders (same scene)."""
    out: Path = Path("test_views.png")
    """PNG to write."""
    views: tuple[int, ...] = field(default_factory=lambda: (0, 4, 8, 12))
    """Indices into the test split (the split evaluation uses)."""


@torch.no_grad()
def main(cfg: TestViews) -> Path:
    methods = [load_run(r, device="cpu")[0] for r in cfg.runs]
    d = run_data_config(load_run(cfg.runs[0], device="cpu")[1], cfg.runs[0])
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    split = eval_split(scene)
    views, cams = scene.split(split), scene.cameras(split)
    bg = torch.tensor(scene.background)
    cells = []
    for i in cfg.views:
        if not 0 <= i < len(views):
            raise Splat4DError(f"view {i} is not in the {split} split ({len(views)} views)")
        for m in methods:
            cells.append(m.render(cams[i], float(views[i].time), bg).rgb[0].clamp(0, 1))
        cells.append(scene.image(views[i]))
    path = save_image(cfg.out, image_grid(cells, cols=len(methods) + 1, gap=3, fill=0.5))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    try:
        main(tyro.cli(TestViews))
    except Splat4DError as e:
        print(f"test_views: error: {e}", file=sys.stderr)
        sys.exit(2)
