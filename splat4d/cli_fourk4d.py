"""`splat4d carve` and `splat4d bake` (4K4D), kept apart from cli.py, which loads no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from splat4d import config_checks as cc
from splat4d.cli import _formats
from splat4d.methods.fourk4d.carve import CarveConfig, carve_scene, write_carved

Positional = tyro.conf.Positional


@dataclass
class Carve:
    """Space-carve each frame of a synchronized multi-view capture into a point cloud (in the visual hull of the masks, on
    the surfaces its cameras agree on by colour; --carve.points-from hull: the hull's own resample)."""

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


@dataclass
class Bake:
    """Bake a fourk4d run for real-time rendering (networks evaluated once; eval/render/export read the folder)."""

    run_dir: Positional[Path]
    """Run folder of a `fourk4d` fit."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("baked")
    """Folder to write (config.yaml + checkpoint.pt; must not hold a run)."""
    precision: Literal["fp16", "fp32"] = "fp16"
    """Storage of colours, densities and SH (positions, radii and logits stay fp32)."""

    def validate(self) -> None:
        cc.check_path("RUN_DIR", self.run_dir)
        cc.check_output_dir("--out", self.out)
        cc.check_choice("--precision", self.precision, ("fp16", "fp32"))

    def run(self) -> int:
        from splat4d.methods.fourk4d.baked import bake_run

        baked = bake_run(self.run_dir, self.out, self.precision)
        n = sum(t.numel() * t.element_size() for t in baked.state_dict().values())
        frames = baked.means.shape[0]
        print(f"baked {self.run_dir} into {self.out}: {frames} frames x {baked.num_primitives} points, "
              f"{n / frames / 1e6:.2f} MB per frame ({self.precision}); eval, render and export read it")
        return 0
