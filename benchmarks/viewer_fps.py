"""How fast `splat4d view` can redraw: a run's render of a browser view (3:2, the camera of the first training
view) at several `--max-size` values, render calls only (no JPEG, no websocket), time sweeping 0 -> 1.
Prints a table and writes JSON with the load average, so a number taken beside other work shows it.

Usage: python benchmarks/viewer_fps.py RUN [--sizes 256 512] [--frames 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from splat4d.data import load_scene
from splat4d.train.run import load_run, run_data_config
from splat4d.viewer import camera_from_view, view_of_camera


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", type=Path)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "viewer_fps.json")
    a = p.parse_args()
    method, config, _ = load_run(a.run)
    d = run_data_config(config, a.run)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    bg = torch.tensor(scene.background, dtype=torch.float32, device=method.device)
    wxyz, pos, fov = view_of_camera(scene.cameras("train")[0])
    load_before = os.getloadavg()
    rows = []
    for size in a.sizes:
        cam = camera_from_view(wxyz, pos, fov, 1.5, size).to(method.device)
        with torch.no_grad():
            method.render(cam, 0.0, bg)  # warm-up
            t0 = time.perf_counter()
            for i in range(a.frames):
                method.render(cam, i / max(a.frames - 1, 1), bg)
            fps = a.frames / (time.perf_counter() - t0)
        rows.append({"max_size": size, "width": cam.width, "height": cam.height, "fps": fps})
        print(f"{cam.width}x{cam.height}: {fps:.1f} frames/s")
    result = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "run": str(a.run), "method": config["method"],
                       "machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch_threads": torch.get_num_threads(),
                       "load_average_before": load_before, "load_average_after": os.getloadavg(),
                       "command": "python benchmarks/viewer_fps.py " + str(a.run)}, "rows": rows}
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
