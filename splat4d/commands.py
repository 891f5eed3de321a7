"""What `splat4d eval / render / export / demo` do, as plain functions (the CLI parses, these work)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from splat4d.errors import ConfigError
from splat4d.train.evaluate import evaluate
from splat4d.train.run import load_run, run_data_config, write_metrics

METRIC_ROWS = ("psnr", "ssim", "dssim", "lpips", "fps", "size_mb", "num_gaussians", "iterations")


def print_metrics(result: dict, title: str = "") -> None:
    if title:
        print(title)
    for k in METRIC_ROWS:
        v = result.get(k)
        text = "unavailable" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
        print(f"  {k:<14} {text}")
    if result.get("lpips_note"):
        print(f"  (lpips: {result['lpips_note']})")


def print_video_metrics(video: dict) -> None:
    print(f"consistent4d protocol ({video['videos']} videos, {video['frames']} frames, {video['clips']} clips of "
          f"{video['clip_len']}):")
    for k in ("clip", "lpips", "fvd", "fid_vid"):
        v = video[k]
        print(f"  {k:<14} {f'{v:.4f}' if isinstance(v, float) else v}")
    for k, note in video.get("notes", {}).items():
        print(f"  ({k}: {note})")


def eval_run(run: Path, data: str | None, scale: float | None, out: Path | None, split: str | None,
             lpips_weights: str | None, protocol: str = "standard", clip_model: str | None = None,
             i3d_weights: str | None = None, fidvid_weights: str | None = None) -> dict:
    """Evaluate a run (folder or .s4d) and write metrics.json. `protocol` "consistent4d" adds the video
    metrics of `splat4d.eval_video` (CLIP, LPIPS, FVD, FID-VID) under the key "consistent4d"."""
    from splat4d.data import load_scene
    from splat4d.data.scene import select_cameras

    method, config, step = load_run(run)
    d = run_data_config(config, run)
    scene = load_scene(data or d.path, scale=scale or d.scale, background=d.background,
                       format=None if data else d.format)
    scene = type(method).prepare_scene(select_cameras(scene, () if data else d.train_cameras), method.cfg)
    run = Path(run)
    out = Path(out) if out else (run.parent / f"{run.stem}_eval" if run.is_file() else run)
    result = evaluate(method, scene, split=split, out_dir=out / "eval", lpips_weights=lpips_weights)
    result["iterations"] = step
    if run.is_file():  # a bitstream: its size is the file's, not the decoded tensors'
        from splat4d.metrics import file_size_mb

        result["decoded_size_mb"] = result["size_mb"]
        result["size_mb"] = file_size_mb(run)
    if protocol == "consistent4d":
        from splat4d.eval_video import evaluate_video

        result["consistent4d"] = evaluate_video(method, scene, result["split"], clip_model, i3d_weights,
                                                fidvid_weights, lpips_weights)
    path = write_metrics(out, result)
    print_metrics(result, f"{config['method']} on {scene.name} ({result['split']}, {result['views']} views):")
    if "consistent4d" in result:
        print_video_metrics(result["consistent4d"])
    print(f"wrote {path} and {out / 'eval'}/*.png")
    return result


def render_run(run: Path, path: str, out: Path, time: float | None, frames: int, fps: int, side_by_side: bool,
               camera: int = 0) -> Path:
    from splat4d.videos import render_video
    from splat4d.data import load_scene
    from splat4d.data.scene import select_cameras

    method, config, _ = load_run(run)
    d = run_data_config(config, run)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    scene = type(method).prepare_scene(select_cameras(scene, d.train_cameras), method.cfg)
    written = render_video(method, scene, path, out, time, frames, fps, side_by_side, camera)
    print(f"wrote {written}")
    return written


def visible_gaussians(g: dict[str, Tensor]) -> dict[str, Tensor]:
    """The activated Gaussians of `gaussians_at` whose opacity can draw a pixel (>= 1/255)."""
    keep = g["opacities"] >= 1.0 / 255.0
    return {k: v[keep] for k, v in g.items()}


@torch.no_grad()
def export_run(run: Path, out: Path, times: list[float], fmt: str = "ply") -> list[Path]:
    """Per-frame 3DGS PLY files of the model deformed to each time (one file, or a folder of them), or with
    `fmt` "npz" one archive of the whole sequence (`splat4d.io.sequence`). Gaussians too faint at that time
    to draw a pixel (opacity < 1/255, the rasterizer's cut-off; e.g. those a temporal opacity shows at other
    times only) are left out. Point methods (fourk4d, baked or not) write coloured point clouds instead
    (`colored_points_at`)."""
    from splat4d.io.ply import save_gaussians_ply, save_points_ply
    from splat4d.io.sequence import save_sequence_npz

    method, _, _ = load_run(run)
    if not hasattr(method, "gaussians_at") and not hasattr(method, "colored_points_at"):
        raise ConfigError(f"method {method.name!r} has no per-frame Gaussians or points to export")
    gaussians = hasattr(method, "gaussians_at")
    frames = []
    for t in times:
        if gaussians:
            frames.append(visible_gaussians(method.gaussians_at(float(t))))
        else:  # point methods (fourk4d): coloured points of the frame nearest t
            xyz, rgb = method.colored_points_at(float(t))
            frames.append({"xyz": xyz, "rgb": rgb})
    out = Path(out)
    if fmt == "npz":
        paths = [save_sequence_npz(out, "gaussians" if gaussians else "points", times, frames)]
        print(f"wrote {len(times)} frame(s) to {out}")
        return paths
    paths = []
    for i, (t, f) in enumerate(zip(times, frames)):
        p = out if len(times) == 1 and out.suffix == ".ply" else out / f"frame_{i:04d}_t{t:.4f}.ply"
        if gaussians:
            paths.append(save_gaussians_ply(p, f["means"], f["quats"], f["scales"], f["opacities"], f["sh"]))
        else:
            paths.append(save_points_ply(p, f["xyz"], f["rgb"]))
    print(f"wrote {len(paths)} PLY file(s) to {out}")
    return paths
