"""Deformable vs static with the same iteration budget, on the synthetic default scene and the D-NeRF
collision scene (../shared/data, downscaled to 200x200). Prints a table and writes JSON.

Usage: python benchmarks/quality.py [--iters 3000] [--scenes synthetic:default dnerf] [--out DIR]
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import tyro

from splat4d.methods.base import get_method
from splat4d.train.run import DataConfig, fit
from splat4d.train.trainer import TrainConfig

DNERF = Path(__file__).resolve().parents[1].parent / "shared/data/dnerf-scene3-collision"
SCENES = {
    "synthetic:default": DataConfig("synthetic:default", 1.0, "black"),
    "dnerf": DataConfig(str(DNERF), 0.25, "white"),
}


@dataclass
class QualityBench:
    """Which scenes and methods, and how long to train."""

    iters: int = 3000
    """Iterations per run (the same for every method)."""
    scenes: tuple[str, ...] = ("synthetic:default", "dnerf")
    """Scene keys: synthetic:default, dnerf."""
    methods: tuple[str, ...] = ("static", "deformable")
    """Methods to compare."""
    out: Path = Path("benchmarks/results/quality")
    """Run folders and quality.json go here."""
    max_init_points: int = 0
    """If > 0, cap the initial point cloud (D-NeRF ships 100k random points) for every method."""


def main(cfg: QualityBench) -> int:
    rows = []
    for scene in cfg.scenes:
        data = SCENES[scene]
        if scene == "dnerf" and not DNERF.is_dir():
            print(f"skip {scene}: {DNERF} not found")
            continue
        for name in cfg.methods:
            run = cfg.out / f"{scene.replace(':', '_')}_{name}"
            if run.exists():
                import shutil

                shutil.rmtree(run)
            t0 = time.perf_counter()
            mcfg = get_method(name).Config()
            if cfg.max_init_points > 0:
                mcfg.max_init_points = cfg.max_init_points
            r = fit(name, mcfg, data, TrainConfig(iters=cfg.iters, save_every=0), run)
            rows.append({"scene": scene, "method": name, **{k: r.get(k) for k in (
                "psnr", "ssim", "dssim", "lpips", "fps", "size_mb", "num_gaussians", "iterations", "train_seconds")},
                "grad_threshold": mcfg.densify.grad_threshold,  # resolved from the scene (0 = auto)
                "wall_seconds": time.perf_counter() - t0})
            print(_row(rows[-1]), flush=True)
    print("\n" + HEADER)
    for r in rows:
        print(_row(r))
    for scene in {r["scene"] for r in rows}:
        by = {r["method"]: r for r in rows if r["scene"] == scene}
        if "static" in by and "deformable" in by:
            print(f"{scene}: deformable - static = {by['deformable']['psnr'] - by['static']['psnr']:+.2f} dB PSNR")
    cfg.out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "date": time.strftime("%Y-%m-%d"), "iters": cfg.iters,
            "max_init_points": cfg.max_init_points, "numba_threads": numba.get_num_threads()}
    (cfg.out / "quality.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {cfg.out / 'quality.json'}")
    return 0


HEADER = (f"{'scene':<18} {'method':<11} {'PSNR':>6} {'SSIM':>6} {'D-SSIM':>7} {'train s':>8} {'it/s':>5} "
          f"{'FPS':>6} {'MB':>6} {'N':>7}")


def _row(r: dict) -> str:
    its = r["iterations"] / r["train_seconds"] if r.get("train_seconds") else float("nan")
    return (f"{r['scene']:<18} {r['method']:<11} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['dssim']:7.4f} "
            f"{r['train_seconds']:8.0f} {its:5.1f} {r['fps']:6.1f} {r['size_mb']:6.2f} {r['num_gaussians']:7d}")


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(QualityBench)))
