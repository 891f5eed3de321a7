"""Render speed of trained runs, measured on its own: every test view of each run folder rendered after a
warm-up, several passes, nothing else of splat4d running in this process. Prints a table and writes JSON
with the machine's load average before and after, so a number taken beside other work shows it.

Usage: python benchmarks/fps.py RUN [RUN ...] [--passes 3] [--out benchmarks/results/fps.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numba
import torch

from splat4d.data import load_scene
from splat4d.metrics import time_render
from splat4d.train.evaluate import eval_split
from splat4d.train.run import load_run, run_data_config


def measure(run: Path, passes: int) -> dict:
    method, config, step = load_run(run)
    d = run_data_config(config)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    split = eval_split(scene)
    views = scene.split(split)
    device = next(method.parameters()).device
    cams = scene.cameras(split).to(device)
    bg = torch.tensor(scene.background, dtype=torch.float32, device=device)

    def render_all():
        with torch.no_grad():
            for i, v in enumerate(views):
                method.render(cams[i], float(v.time), bg)

    t = time_render(render_all, warmup=1, iters=passes)
    w, h = scene.resolution
    return {"run": str(run), "method": config["method"], "scene": scene.name, "resolution": f"{w}x{h}",
            "views": len(views), "num_gaussians": method.num_primitives, "iterations": step,
            "fps": len(views) * 1000.0 / t["ms_mean"], "ms_per_frame": t["ms_mean"] / len(views),
            "device": str(device)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fps.json"))
    args = ap.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    rows = []
    print(f"{'method':<11} {'scene':<26} {'res':>9} {'N':>7} {'FPS':>7} {'ms':>7}")
    for run in args.runs:
        r = measure(run, args.passes)
        rows.append(r)
        print(f"{r['method']:<11} {r['scene']:<26} {r['resolution']:>9} {r['num_gaussians']:>7} {r['fps']:7.1f} "
              f"{r['ms_per_frame']:7.1f}")
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
            "numba_threads": numba.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "passes": args.passes, "load_avg_1min_before": load_before,
            "load_avg_1min_after": round(os.getloadavg()[0], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out} (load average before/after: {meta['load_avg_1min_before']} / "
          f"{meta['load_avg_1min_after']})")
    return 0


if __name__ == "__main__":
    from splat4d.errors import Splat4DError

    try:
        raise SystemExit(main())
    except Splat4DError as e:  # a missing or unreadable run folder: one line, exit 2
        print(f"fps: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
