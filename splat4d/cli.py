"""The `splat4d` command. Each subcommand is a dataclass (its fields are the flags, their docstrings the
help); `main` parses with tyro, runs it, and turns user-facing errors into one line and exit code 2."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from splat4d.errors import Splat4DError

Positional = tyro.conf.Positional


@dataclass
class Info:
    """Describe a dataset: format, views per split, resolution, cameras, frames, time range."""

    path: Positional[str]
    """Dataset folder, or `synthetic` / `synthetic:NAME` for a built-in scene."""
    check: bool = False
    """Also decode every image and mask; report each unreadable or mis-sized one and exit 2 if any."""
    format: Optional[str] = None
    """Force a reader (dnerf, neu3d, hypernerf, easyvolcap, synthetic) instead of detecting it."""
    scale: float = 1.0
    """Resolution scale applied to images and cameras."""
    background: str = "black"
    """Background colour: white, black or R,G,B."""

    def run(self) -> int:
        from splat4d.data import check_scene, load_scene

        scene = load_scene(self.path, scale=self.scale, background=self.background, format=self.format)
        s = scene.summary()
        views = ", ".join(f"{k} {v}" for k, v in s["views"].items())
        print(f"{s['name']}: format {s['format']}")
        print(f"  views        {views}")
        print(f"  resolution   {s['resolution'][0]}x{s['resolution'][1]}")
        print(f"  cameras      {s['cameras']}")
        print(f"  frames       {s['frames']}")
        print(f"  time range   {s['time_range'][0]:.4f} .. {s['time_range'][1]:.4f}")
        print(f"  init points  {s['points']}")
        if not self.check:
            return 0
        problems = check_scene(scene)
        for p in problems:
            print(f"  bad: {p}")
        n = sum(s["views"].values())
        print(f"  checked {n} views: {len(problems)} problem(s)")
        return 2 if problems else 0


@dataclass
class Synth:
    """Write a built-in synthetic scene to disk in the EasyVolcap layout."""

    name: Positional[str] = "default"
    """Preset name (see splat4d.data.synthetic.PRESETS)."""
    out: Path = Path("synthetic_scene")
    """Output folder."""

    def run(self) -> int:
        from splat4d.data.easyvolcap import write_easyvolcap
        from splat4d.data.synthetic import load_synthetic

        scene = load_synthetic(self.name)
        write_easyvolcap(scene, self.out)
        print(f"wrote synthetic scene {self.name!r} ({sum(len(v) for v in scene.splits.values())} views) to {self.out}")
        return 0


@dataclass
class Demo:
    """The main job on the built-in default scene, no downloads: writes images, an mp4 and a summary."""

    out: Path = Path("outputs/demo")
    """Output folder."""
    scene: str = "synthetic:default"
    """Dataset (a path, or synthetic:NAME)."""

    def run(self) -> int:
        from splat4d.demo import run_demo

        return run_demo(self.out, self.scene)


@dataclass
class BenchRaster:
    """Rasterizer benchmark: CPU kernels vs the dense torch reference (table + JSON)."""

    gaussians: tuple[int, ...] = (1000, 2000, 10000, 100000)
    """Gaussian counts."""
    resolutions: tuple[int, ...] = (128, 256, 512)
    """Square image sizes."""
    repeats: int = 5
    """Timed repetitions per cell (median reported)."""
    dense: bool = True
    """Also time the dense torch reference where it fits in memory."""
    out: Path = Path("benchmarks/results/raster.json")
    """JSON output path."""

    def run(self) -> int:
        from splat4d.bench.raster import RasterBenchConfig, main

        return main(RasterBenchConfig(self.gaussians, self.resolutions, self.repeats, self.dense, self.out))


COMMANDS: dict[str, type] = {
    "info": Info,
    "synth": Synth,
    "demo": Demo,
    "bench raster": BenchRaster,
}


def _usage() -> str:
    lines = ["usage: splat4d COMMAND [--help] [ARGS...]", "", "commands:"]
    for name, cls in COMMANDS.items():
        lines.append(f"  {name:<14} {(cls.__doc__ or '').strip().splitlines()[0]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((n for n in COMMANDS if argv[: len(n.split())] == n.split()), None)
    if name is None:
        print(_usage(), file=sys.stdout if argv[:1] in ([], ["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    cls = COMMANDS[name]
    cmd = tyro.cli(cls, args=argv[len(name.split()) :], prog=f"splat4d {name}", description=cls.__doc__)
    try:
        return int(cmd.run() or 0)
    except Splat4DError as e:
        print(f"splat4d: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("splat4d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
