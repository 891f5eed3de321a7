"""Quality benchmark: methods trained with the same iteration budget on one scene, evaluated on its held-out
views. Prints a table and writes `quality_<scene>.json` — the file docs/benchmarks.md quotes and the
`slow` test tier checks (tests/test_quality.py), so a quality regression fails a command.

Scenes: "synthetic:default" (built in, multi-view), "synthetic:fast" (built in, monocular fast motion) and
"dnerf" (../shared/data/dnerf-scene3-collision at 200x200, white background; skipped when absent), all at
3000 iterations with the methods' default settings. Each scene has the settings its table in docs/benchmarks.md was
measured with (`SCENES`); the command line can change the iterations and the initial-cloud cap.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import torch

from splat4d.methods.base import get_method
from splat4d.train.run import DataConfig, fit
from splat4d.train.trainer import TrainConfig

DNERF = Path(__file__).resolve().parents[2].parent / "shared/data/dnerf-scene3-collision"


@dataclass(frozen=True)
class SceneSetting:
    data: DataConfig
    iters: int
    max_init_points: int  # 0: the method's default


SCENES = {
    "synthetic:default": SceneSetting(DataConfig("synthetic:default", 1.0, "black"), 3000, 0),
    "synthetic:fast": SceneSetting(DataConfig("synthetic:fast", 1.0, "black"), 3000, 0),
    "dnerf": SceneSetting(DataConfig(str(DNERF), 0.25, "white"), 3000, 0),
}


@dataclass
class QualityBench:
    """Methods compared on one scene with the same iteration budget (table + JSON)."""

    scene: str = "synthetic:default"
    """Scene key: synthetic:default, synthetic:fast or dnerf."""
    methods: tuple[str, ...] = ("static", "deformable")
    """Methods to compare."""
    iters: int = 0
    """Iterations per run (0: the scene's benchmark setting, 3000)."""
    max_init_points: int = -1
    """Cap on the initial point cloud (-1: the scene's setting, 0: the method's default)."""
    out: Path = Path("benchmarks/results")
    """quality_<scene>.json goes here; run folders under out/quality/."""


def available(scene: str) -> tuple[bool, str]:
    if scene not in SCENES:
        return False, f"unknown scene {scene!r} (choose {', '.join(SCENES)})"
    if scene == "dnerf" and not DNERF.is_dir():
        return False, f"{DNERF} not found (the shared data folder beside the checkout)"
    return True, ""


def run(cfg: QualityBench, progress: bool = True) -> dict:
    """Train and evaluate every method; returns and writes {"meta": ..., "rows": [...], "margins": ...}."""
    ok, why = available(cfg.scene)
    if not ok:
        raise FileNotFoundError(why)
    setting = SCENES[cfg.scene]
    iters = cfg.iters or setting.iters
    cap = setting.max_init_points if cfg.max_init_points < 0 else cfg.max_init_points
    key = cfg.scene.replace(":", "_")
    meta = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "scene": cfg.scene, "iters": iters,
        "max_init_points": cap, "scale": setting.data.scale, "background": setting.data.background,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
        "torch": torch.__version__, "numba_threads": numba.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_avg_1min_at_start": round(os.getloadavg()[0], 2),  # > ~0.5: something else was running
    }
    rows = []
    for name in cfg.methods:
        run_dir = cfg.out / "quality" / f"{key}_{name}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        mcfg = get_method(name).Config()
        if cap > 0:
            mcfg.max_init_points = cap
        r = fit(name, mcfg, setting.data, TrainConfig(iters=iters, save_every=0), run_dir, progress=progress)
        rows.append({"method": name, **{k: r.get(k) for k in (
            "psnr", "ssim", "dssim", "lpips", "fps", "size_mb", "num_gaussians", "iterations", "train_seconds")},
            "grad_threshold": mcfg.densify.grad_threshold,  # resolved from the scene (auto)
            "wall_seconds": time.perf_counter() - t0})
        print(row_text(cfg.scene, rows[-1]), flush=True)
    meta["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    by = {r["method"]: r for r in rows}
    margins = {}
    if "static" in by and "deformable" in by:
        margins["deformable_minus_static_psnr"] = by["deformable"]["psnr"] - by["static"]["psnr"]
    result = {"meta": meta, "rows": rows, "margins": margins}
    print("\n" + HEADER)
    for r in rows:
        print(row_text(cfg.scene, r))
    for k, v in margins.items():
        print(f"{cfg.scene}: {k.replace('_', ' ')} = {v:+.2f} dB")
    cfg.out.mkdir(parents=True, exist_ok=True)
    path = cfg.out / f"quality_{key}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


HEADER = (f"{'scene':<18} {'method':<11} {'PSNR':>6} {'SSIM':>6} {'D-SSIM':>7} {'train s':>8} {'it/s':>5} "
          f"{'FPS':>6} {'MB':>6} {'N':>7}")


def row_text(scene: str, r: dict) -> str:
    its = r["iterations"] / r["train_seconds"] if r.get("train_seconds") else float("nan")
    return (f"{scene:<18} {r['method']:<11} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['dssim']:7.4f} "
            f"{r['train_seconds']:8.0f} {its:5.1f} {r['fps']:6.1f} {r['size_mb']:6.2f} {r['num_gaussians']:7d}")
