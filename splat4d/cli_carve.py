"""`splat4d carve`: 4K4D's space carving as a command (kept apart from cli.py, which loads no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import tyro

from splat4d import config_checks as cc
from splat4d.cli import _formats
from splat4d.methods.fourk4d.carve import CarveConfig, carve_scene, write_carved

Positional = tyro.conf.Positional


@dataclass
class Carve:
    """Space-carve each frame of a synchronized multi-view capture into a point cloud (visual hull of the masks)."""

    path: Positional[str]
    """Dataset folder (masks beside the images, or RGBA images), or `synthetic:NAME`."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("carved")
    """Folder for <frame>.ply per frame and carve.json (written whole or not at all)."""
    scale: float = 1.0
    """Resolution scale of images, masks and cameras."""
    format: Optional[str] = None
    """Force a reader instead of detecting it."""
    background: Optional[str] = None
    """Derive masks from this background colour (white, black or R,G,B) where a view has no mask."""
    split: str = "train"
    """Views to carve from (held-out cameras stay out of the hull)."""
    carve: CarveConfig = field(default_factory=CarveConfig)

    def validate(self) -> None:
        cc.check_str("PATH", self.path)
        cc.check_float("--scale", self.scale, 0, lo_open=True)
        cc.check_choice("--format", self.format, _formats(), optional=True)
        if self.background is not None:
            cc.check_background("--background", self.background)
        cc.check_choice("--split", self.split, ("train", "test", "val"))
        cc.check_output_dir("--out", self.out)
        self.carve.validate("--carve")

    def run(self) -> int:
        from splat4d.data import load_scene, parse_background
        bg = None if self.background is None else parse_background(self.background)
        scene = load_scene(self.path, scale=self.scale, format=self.format)
        frames = carve_scene(scene, self.carve, self.split, bg)
        write_carved(self.out, frames, self.carve, self.path)
        n = sum(len(f["hull"].voxels) for f in frames)
        print(f"carved {len(frames)} frames ({n / len(frames):.0f} voxels of {frames[0]['hull'].voxel_size:.4g} "
              f"per frame on average) -> {self.out}/<frame>.ply, carve.json")
        return 0
