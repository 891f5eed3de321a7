"""The `splat4d` command. Each subcommand is a dataclass (its fields are the flags, their docstrings the
help); `main` parses with tyro, runs it, and turns user-facing errors into one line and exit code 2."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from splat4d import config_checks as cc
from splat4d.cli_parse import parse
from splat4d.errors import ConfigError, Splat4DError

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
    background: str = "auto"
    """Background colour: auto (the format's convention: white for D-NeRF, black otherwise), white, black or
    R,G,B."""

    def validate(self) -> None:
        cc.check_str("PATH", self.path)
        cc.check_bool("--check", self.check)
        cc.check_choice("--format", self.format, _formats(), optional=True)
        cc.check_float("--scale", self.scale, 0, lo_open=True)
        cc.check_background("--background", self.background)

    def run(self) -> int:
        from splat4d.data import check_scene, load_scene, resolve_background

        colour, why = resolve_background(self.background, self.path, self.format)
        scene = load_scene(self.path, scale=self.scale, background=colour, format=self.format)
        s = scene.summary()
        views = ", ".join(f"{k} {v}" for k, v in s["views"].items())
        print(f"{s['name']}: format {s['format']}")
        print(f"  views        {views}")
        print(f"  resolution   {s['resolution'][0]}x{s['resolution'][1]}")
        print(f"  cameras      {s['cameras']}")
        print(f"  frames       {s['frames']}")
        print(f"  time range   {s['time_range'][0]:.4f} .. {s['time_range'][1]:.4f}")
        print(f"  init points  {s['points']}")
        why = "set by --background" if why == "given" else f"{why}; --background to change"
        print(f"  background   {colour} ({why})")
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

    def validate(self) -> None:
        from splat4d.data.synthetic import PRESETS

        cc.check_choice("NAME", self.name, PRESETS)
        cc.check_output_dir("--out", self.out)

    def run(self) -> int:
        from splat4d.data.easyvolcap import write_easyvolcap
        from splat4d.data.synthetic import load_synthetic

        scene = load_synthetic(self.name)
        write_easyvolcap(scene, self.out)
        print(f"wrote synthetic scene {self.name!r} ({sum(len(v) for v in scene.splits.values())} views) to {self.out}")
        return 0


@dataclass
class Demo:
    """The main job on the built-in default scene, no downloads: fit, evaluate, write PNGs and mp4s."""

    out: Path = Path("outputs/demo")
    """Output folder."""
    scene: str = "synthetic:default"
    """Dataset (a path, or synthetic:NAME)."""
    iters: int = 2500
    """Training iterations."""
    method: str = "deformable"
    """Method to fit."""

    def validate(self) -> None:
        from splat4d.methods.base import available_methods

        cc.check_output_dir("--out", self.out)
        cc.check_str("--scene", self.scene)
        cc.check_int("--iters", self.iters, 1)
        cc.check_choice("--method", self.method, available_methods())

    def run(self) -> int:
        from splat4d.demo import run_demo

        return run_demo(self.out, self.scene, self.iters, self.method)


@dataclass
class Eval:
    """Evaluate a run on its test split: PSNR, SSIM, D-SSIM, LPIPS, FPS, size -> metrics.json + PNGs.

    --protocol consistent4d adds the video metrics CLIP, LPIPS, FVD and FID-VID (docs/metrics.md)."""

    run_dir: Positional[Path]
    """Run folder written by `splat4d fit`, or a .s4d bitstream."""
    data: Optional[str] = None
    """Dataset (default: the run's own; the one recorded in a bitstream's header)."""
    scale: Optional[float] = None
    """Resolution scale (default: the run's own)."""
    out: Optional[Path] = None
    """Where metrics.json and eval/ go (default: the run folder; NAME_eval/ beside a NAME.s4d)."""
    split: Optional[str] = None
    """Split to evaluate (default: test, else val)."""
    lpips_weights: Optional[str] = None
    """LPIPS weights file (else $SPLAT4D_LPIPS_WEIGHTS; LPIPS is reported unavailable without one)."""
    protocol: Literal["standard", "consistent4d"] = "standard"
    """standard: the image metrics above. consistent4d: also the video metrics of Consistent4D (CLIP, LPIPS,
    FVD, FID-VID per camera video of the split; each "unavailable: ..." without its weights)."""
    clip_model: Optional[str] = None
    """consistent4d: local folder (or hub-cache id, offline) of CLIP ViT-B/32 (else $SPLAT4D_CLIP_MODEL)."""
    i3d_weights: Optional[str] = None
    """consistent4d: TorchScript I3D for FVD, i3d_torchscript.pt (else $SPLAT4D_I3D_WEIGHTS)."""
    fidvid_weights: Optional[str] = None
    """consistent4d: 3D ResNet-50 state dict for FID-VID, resnet-50-kinetics.pth (else $SPLAT4D_FIDVID_WEIGHTS)."""

    def validate(self) -> None:
        cc.check_path("RUN_DIR", self.run_dir)
        cc.check_str("--data", self.data, optional=True)
        if self.scale is not None:
            cc.check_float("--scale", self.scale, 0, lo_open=True)
        if self.out is not None:
            cc.check_output_dir("--out", self.out)
        cc.check_choice("--split", self.split, ("train", "val", "test"), optional=True)
        cc.check_str("--lpips-weights", self.lpips_weights, optional=True)
        cc.check_choice("--protocol", self.protocol, ("standard", "consistent4d"))
        for flag in ("clip_model", "i3d_weights", "fidvid_weights"):
            name = "--" + flag.replace("_", "-")
            cc.check_str(name, getattr(self, flag), optional=True)
            if getattr(self, flag) is not None and self.protocol != "consistent4d":
                raise ConfigError(f"{name} is only used with --protocol consistent4d, got --protocol {self.protocol}")

    def run(self) -> int:
        from splat4d.commands import eval_run

        eval_run(self.run_dir, self.data, self.scale, self.out, self.split, self.lpips_weights, self.protocol,
                 self.clip_model, self.i3d_weights, self.fidvid_weights)
        return 0


@dataclass
class Render:
    """Render a run along a camera path into an mp4 (time sweeps 0 -> 1 unless --time is given)."""

    run_dir: Positional[Path]
    """Run folder written by `splat4d fit`, or a .s4d bitstream."""
    path: Literal["test", "orbit", "spiral", "bullet", "fixed"] = "orbit"
    """Camera path: the test cameras (with their times), an orbit or a spiral (time sweeping 0 -> 1), bullet
    (an orbit at a frozen --time, 0.5 by default) or fixed (training camera --camera, time running)."""
    out: Path = Path("render.mp4")
    """Output video."""
    time: Optional[float] = None
    """Freeze time at this value in [0, 1] instead of sweeping."""
    frames: int = 120
    """Frames of an orbit, spiral, bullet or fixed path."""
    fps: int = 24
    """Frames per second of the video."""
    side_by_side: bool = False
    """With --path test: ground truth | render | error map (mean |render - truth| x 4) in each frame."""
    camera: int = 0
    """With --path fixed: which training camera (0 = the first)."""

    def validate(self) -> None:
        from splat4d.io.video import VIDEO_SUFFIXES
        from splat4d.videos import PATHS

        cc.check_path("RUN_DIR", self.run_dir)
        cc.check_choice("--path", self.path, PATHS)
        cc.check_output_file("--out", self.out, VIDEO_SUFFIXES)
        if self.time is not None:
            cc.check_float("--time", self.time, 0, 1)
        cc.check_int("--frames", self.frames, 1)
        cc.check_int("--fps", self.fps, 1, 1000)
        cc.check_bool("--side-by-side", self.side_by_side)
        cc.check_int("--camera", self.camera, 0)
        if self.side_by_side and self.path != "test":
            raise ConfigError("--side-by-side needs --path test (other paths have no ground truth)")

    def run(self) -> int:
        from splat4d.commands import render_run

        render_run(self.run_dir, self.path, self.out, self.time, self.frames, self.fps, self.side_by_side,
                   self.camera)
        return 0


@dataclass
class Export:
    """Export per-frame 3D Gaussians as 3DGS PLY files (any 3DGS viewer opens them), or a sequence as npz."""

    run_dir: Positional[Path]
    """Run folder written by `splat4d fit`, a .s4d bitstream or a baked 4K4D folder."""
    out: Path = Path("export")
    """ply: a .ply file (one time) or a folder (several); npz: the archive to write."""
    format: Literal["ply", "npz"] = "ply"
    """ply: one standard 3DGS PLY per time (coloured points for 4K4D); npz: the whole sequence in one
    compressed archive (`splat4d.io.sequence`)."""
    times: tuple[str, ...] = ("0",)
    """Times in [0, 1] to export, space- or comma-separated (--times 0,0.5,1)."""
    frames: int = 0
    """If > 0, export this many evenly spaced times instead of --times."""

    def validate(self) -> None:
        cc.check_path("RUN_DIR", self.run_dir)
        try:
            values = [float(x) for x in cc.split_commas(self.times)]
        except ValueError:
            raise ConfigError(f"--times must be numbers in [0, 1], got {' '.join(map(str, self.times))}") from None
        self.times = cc.check_floats("--times", values, 0, 1)
        cc.check_int("--frames", self.frames, 0)
        cc.check_choice("--format", self.format, ("ply", "npz"))
        if self.format == "npz":
            if Path(self.out).suffix != ".npz":
                raise ConfigError(f"--out must end in .npz with --format npz, got {self.out}")
            cc.check_output_file("--out", self.out)
        elif len(self.export_times()) == 1 and Path(self.out).suffix == ".ply":
            cc.check_output_file("--out", self.out)
        else:
            cc.check_output_dir("--out", self.out)

    def export_times(self) -> list[float]:
        return [i / max(self.frames - 1, 1) for i in range(self.frames)] if self.frames > 0 else list(self.times)

    def run(self) -> int:
        from splat4d.commands import export_run

        export_run(self.run_dir, self.out, self.export_times(), self.format)
        return 0


@dataclass
class View:
    """Web viewer of a run, a .s4d bitstream or a baked 4K4D model: time slider, play, camera jumps."""

    run_dir: Positional[Path]
    """Run folder written by `splat4d fit`, a .s4d bitstream or a baked 4K4D folder."""
    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 serves other machines too)."""
    port: int = 8080
    """Port to serve on."""
    max_size: int = 512
    """Longer side, in pixels, of the images splat4d renders for the browser."""

    def validate(self) -> None:
        cc.check_path("RUN_DIR", self.run_dir)
        cc.check_int("--port", self.port, 1, 65535)
        cc.check_int("--max-size", self.max_size, 16, 4096)

    def run(self) -> int:
        from splat4d.viewer import import_viser, serve

        import_viser()  # a missing extra is named before the model loads
        return serve(self.run_dir, self.host, self.port, self.max_size)


@dataclass
class Compare:
    """Fit several methods on one capture (or take finished runs) and compare them on the same test views."""

    data: str = "synthetic:default"
    """Dataset folder, or synthetic / synthetic:NAME."""
    scale: float = 1.0
    """Resolution scale of images and cameras."""
    methods: tuple[str, ...] = ()
    """Methods to fit with their default settings, space- or comma-separated (into OUT/runs/NAME; a finished
    fit there is reused)."""
    runs: tuple[Path, ...] = ()
    """Finished runs to score as they are: run folders, .s4d bitstreams, baked 4K4D folders."""
    iters: int = 3000
    """Training iterations of each fitted method."""
    out: Path = Path("compare")
    """Folder for table.md, table.json, grid.png, rd.png and runs/."""
    lpips_weights: Optional[str] = None
    """LPIPS weights file (default: $SPLAT4D_LPIPS_WEIGHTS; without them LPIPS is "unavailable")."""

    def validate(self) -> None:
        from splat4d.methods.base import available_methods

        cc.check_float("--scale", self.scale, 0, lo_open=True)
        cc.check_int("--iters", self.iters, 1)
        self.methods = tuple(cc.split_commas(self.methods))
        for m in self.methods:
            cc.check_choice("--methods", m, available_methods())
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--methods names a method twice: {', '.join(self.methods)}")
        for r in self.runs:
            cc.check_path("--runs", r)
            if not Path(r).exists():
                raise ConfigError(f"--runs {r} does not exist")
        if not self.methods and not self.runs:
            raise ConfigError("nothing to compare: give --methods and/or --runs")
        cc.check_output_dir("--out", self.out)

    def run(self) -> int:
        from splat4d.compare import compare
        from splat4d.train.run import DataConfig

        compare(DataConfig(self.data, self.scale), list(self.methods), list(self.runs), self.iters, self.out,
                self.lpips_weights)
        return 0


@dataclass
class Compress:
    """Write an adcgs run as a .s4d bitstream (entropy-coded anchors, Draco positions, networks)."""

    run_dir: Positional[Path]
    """Run folder of an `adcgs` fit."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("scene.s4d")
    """Bitstream to write (atomically)."""
    weights: Literal["fp16", "fp32", "int8"] = "int8"
    """Precision of the stored network weights (int8: each matrix row with its own fp32 scale, vectors fp16)."""
    position_bits: int = 16
    """Quantisation bits per axis of the anchor positions (Draco)."""

    def validate(self) -> None:
        cc.check_path("RUN_DIR", self.run_dir)
        cc.check_output_file("--out", self.out)
        cc.check_choice("--weights", self.weights, ("fp16", "fp32", "int8"))
        cc.check_int("--position-bits", self.position_bits, 4, 30)

    def run(self) -> int:
        from splat4d.commands_codec import compress_run

        compress_run(self.run_dir, self.out, self.weights, self.position_bits)
        return 0


@dataclass
class Decompress:
    """Decode a .s4d bitstream into a run folder (config.yaml + checkpoint.pt) that eval/render/export read."""

    bitstream: Positional[Path]
    """A .s4d file written by `splat4d compress`."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("decoded_run")
    """Run folder to create (must not hold a run)."""

    def validate(self) -> None:
        cc.check_path("BITSTREAM", self.bitstream)
        cc.check_output_dir("--out", self.out)

    def run(self) -> int:
        from splat4d.commands_codec import decompress_file

        decompress_file(self.bitstream, self.out)
        return 0


def _formats() -> tuple[str, ...]:
    from splat4d.data import READERS

    return (*READERS, "synthetic")


COMMANDS: dict[str, type | str | None] = {
    "info": Info,
    "synth": Synth,
    "demo": Demo,
    "fit": None,  # built per method: `splat4d fit METHOD ...`
    "eval": Eval,
    "render": Render,
    "export": Export,
    "compare": Compare,
    "view": View,
    "compress": Compress,
    "decompress": Decompress,
    "carve": "splat4d.cli_fourk4d:Carve",  # imported on use (torch)
    "bake": "splat4d.cli_fourk4d:Bake",
    "generate diffusion2": "splat4d.cli_generate:GenerateDiffusion2",
    "generate ds4d": "splat4d.cli_generate:GenerateDS4D",
    "bench raster": "splat4d.bench.raster:RasterBenchConfig",  # imported on use (loads the rasterizer)
}


def _command_class(name: str):
    cls = COMMANDS[name]
    if isinstance(cls, str):
        module, attr = cls.split(":")
        cls = getattr(importlib.import_module(module), attr)
    return cls


def _usage() -> str:
    lines = ["usage: splat4d COMMAND [--help] [ARGS...]", "", "commands:"]
    for name in COMMANDS:
        cls = _command_class(name)
        doc = "Train a method: splat4d fit METHOD --data PATH --out RUN (--help for options)" if cls is None else cls.__doc__
        lines.append(f"  {name:<14} {(doc or '').strip().splitlines()[0]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((n for n in COMMANDS if argv[: len(n.split())] == n.split()), None)
    if name is None:
        print(_usage(), file=sys.stdout if argv[:1] in ([], ["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    rest = argv[len(name.split()) :]
    try:
        if name == "fit":
            from splat4d.cli_fit import main_fit

            return main_fit(rest)
        cls = _command_class(name)
        cmd = parse(cls, rest, prog=f"splat4d {name}", description=cls.__doc__)
        return int(cmd.run() or 0)
    except Splat4DError as e:
        print(f"splat4d: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("splat4d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
