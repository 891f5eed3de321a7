"""Training on a real-size capture in bounded memory (issue 7, part 3). Prints a table and writes JSON.

(a) Builds (once; kept in `--data-dir`, git-ignored) a 16-camera x 30-frame capture at 1024x1024 in the
    EasyVolcap layout with JPEG images and PNG masks, rendered by the synthetic scene's ray caster, and
    trains on it at --scale 1 in a subprocess per cache setting (`splat4d fit ... --image-cache-gb G`),
    recording each child's peak RSS (ru_maxrss from os.wait4, i.e. RUSAGE_CHILDREN of that child alone).
(b) Compares training speed on a small scene (synthetic:default, 128x128) between the ViewLoader with a
    cache that holds every view and the former path (every image stacked as float32 up front), in one
    process, alternating blocks of iterations so that both see the same machine load; both train the
    same model, so the check that their parameters end equal is part of the run.

Usage: python benchmarks/memory.py [--iters 120] [--cache-gb 0.1 0] [--speed-iters 50 --speed-rounds 8]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

GIB = 2**30


@dataclass
class MemoryBench:
    """What to build, train and time."""

    cameras: int = 16
    """Cameras of the built capture (the last one is the test camera)."""
    frames: int = 30
    """Frames of the built capture."""
    size: int = 1024
    """Width and height of the built capture's images."""
    data_dir: Path = Path("benchmarks/results/memory_data")
    """Where the capture is built (reused when complete)."""
    method: str = "static"
    """Method trained on the capture."""
    iters: int = 120
    """Training iterations per cache setting."""
    max_init_points: int = 5000
    """Cap on the initial point cloud."""
    max_gaussians: int = 20000
    """Cap on densification."""
    cache_gb: tuple[float, ...] = (0.1, 0.0)
    """Cache settings to train with (0: the automatic default)."""
    speed_data: str = "synthetic:default"
    """Scene of the speed comparison."""
    speed_method: str = "static"
    """Method of the speed comparison."""
    speed_iters: int = 50
    """Iterations per timed block."""
    speed_rounds: int = 8
    """Timed blocks per path (old, new, new, old, ...)."""
    out: Path = Path("benchmarks/results/memory.json")
    """JSON output."""
    skip_capture: bool = False
    """Only run the speed comparison."""
    skip_speed: bool = False
    """Only run the capture."""
    child_env: tuple[str, ...] = ()
    """KEY=VALUE pairs added to the training child's environment (e.g. MALLOC_MMAP_THRESHOLD_=131072)."""


# ----------------------------------------------------------------------------- (a) the capture
def build_capture(cfg: MemoryBench) -> Path:
    """Render the capture into cfg.data_dir (skipping files already there); returns the folder."""
    from PIL import Image

    from splat4d.data.common import write_point_cloud
    from splat4d.data.opencv_yaml import matrix_to_rodrigues, write_opencv_yaml
    from splat4d.data.synthetic import SyntheticWorld, synthetic_config

    root = cfg.data_dir
    done = root / "complete.json"
    spec = {"cameras": cfg.cameras, "frames": cfg.frames, "size": cfg.size}
    if done.is_file() and json.loads(done.read_text()) == spec:
        return root
    world = SyntheticWorld(synthetic_config("default", num_cameras=cfg.cameras, num_frames=cfg.frames,
                                            width=cfg.size, height=cfg.size, test_cameras=(cfg.cameras - 1,)))
    cams = world.cameras()
    names = [f"{c:02d}" for c in range(cfg.cameras)]
    intri: dict = {"names": names}
    extri: dict = {"names": names}
    for c, n in enumerate(names):
        vm = cams.viewmats[c].double().numpy()
        intri[f"K_{n}"], intri[f"H_{n}"], intri[f"W_{n}"] = cams.Ks[c].double().numpy(), cfg.size, cfg.size
        extri[f"R_{n}"], extri[f"Rot_{n}"], extri[f"T_{n}"] = matrix_to_rodrigues(vm[:3, :3]), vm[:3, :3], vm[:3, 3:4]
    root.mkdir(parents=True, exist_ok=True)
    write_opencv_yaml(root / "intri.yml", intri)
    write_opencv_yaml(root / "extri.yml", extri)
    pts, rgb = world.sample_points(20000, t=0.0)
    write_point_cloud(root / "points.ply", pts, rgb)
    t0 = time.perf_counter()
    for f, t in enumerate(world.times()):
        for c, n in enumerate(names):
            img, mask = root / "images" / n / f"{f:06d}.jpg", root / "masks" / n / f"{f:06d}.png"
            if img.is_file() and mask.is_file():
                continue
            out = world.render(cams[c], t)
            img.parent.mkdir(parents=True, exist_ok=True)
            mask.parent.mkdir(parents=True, exist_ok=True)
            rgb8 = (out["rgb"][0] * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()  # black where nothing is hit
            alpha8 = (out["alpha"][0] * 255).to(torch.uint8).numpy()
            for file, arr, fmt in ((img, rgb8, "JPEG"), (mask, alpha8, "PNG")):
                part = file.with_name(file.name + ".part")  # renamed when complete: no half files
                Image.fromarray(arr).save(part, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                os.replace(part, file)
        print(f"  frame {f + 1}/{cfg.frames} written ({time.perf_counter() - t0:.0f} s)", flush=True)
    done.write_text(json.dumps(spec))
    return root


def train_capture(cfg: MemoryBench, data: Path, cache_gb: float) -> dict:
    """`splat4d fit` on the capture in a child process; its peak RSS, times and cache budget."""
    from splat4d.data.image_cache import cache_budget

    run = cfg.data_dir.parent / "memory_runs" / f"cache{cache_gb:g}"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    args = [sys.executable, "-m", "splat4d.cli", "fit", cfg.method, "--data", str(data), "--scale", "1",
            "--iters", str(cfg.iters), "--out", str(run), "--device", "cpu", "--save-every", "0",
            "--image-cache-gb", str(cache_gb), "--method.max-init-points", str(cfg.max_init_points),
            "--method.densify.max-gaussians", str(cfg.max_gaussians)]
    run.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run.parent / f"{run.name}.log", "w") as log:
        env = {**os.environ, **dict(kv.split("=", 1) for kv in cfg.child_env)}
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed (exit {status}); see {run.parent / f'{run.name}.log'}")
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    return {
        "cache_gb": cache_gb, "cache_budget_gib": cache_budget(cache_gb) / GIB, "child_env": list(cfg.child_env),
        "peak_rss_gib": usage.ru_maxrss * 1024 / GIB, "wall_s": wall, "train_s": metrics["train_seconds"],
        "it_s": cfg.iters / metrics["train_seconds"], "psnr": metrics["psnr"], "gaussians": metrics["num_gaussians"],
    }


# ----------------------------------------------------------------------------- (b) speed
class PreloadedFloat32:
    """The former path: every training image stacked as float32 on the device when training starts."""

    lookahead = 0

    def __init__(self, scene, views, device):
        self.images = torch.stack([scene.image(v) for v in views]).to(device)  # [V, H, W, 3]

    def batch(self, indices, device):
        return self.images[torch.tensor(indices)], None

    def prefetch(self, indices) -> None:
        pass

    def close(self) -> None:
        pass


def compare_speed(cfg: MemoryBench) -> dict:
    from splat4d.data import load_scene
    from splat4d.methods.base import get_method
    from splat4d.render.cpu_kernels import start_threads
    from splat4d.train.trainer import TrainConfig, Trainer

    scene = load_scene(cfg.speed_data)
    cls = get_method(cfg.speed_method)
    total = cfg.speed_iters * cfg.speed_rounds + 5
    trainers = {}
    for path in ("old", "new"):
        method = cls.from_scene(scene, cls.Config(), torch.Generator().manual_seed(0))
        tr = Trainer(method, scene, TrainConfig(iters=total, save_every=0, image_cache_gb=1.0),
                     Path("/tmp/splat4d-memory-bench"), {"method": cfg.speed_method}, torch.device("cpu"))
        if path == "old":
            tr.image_loader.close()
            tr.image_loader = PreloadedFloat32(scene, tr.views, tr.device)
        trainers[path] = tr
    start_threads()  # as Trainer.fit: numba's pool first, then one torch thread
    torch.set_num_threads(1)
    for tr in trainers.values():
        for _ in range(5):  # warm-up: kernels compiled, first views decoded
            tr._train_step()
    seconds = {"old": [], "new": []}
    for r in range(cfg.speed_rounds):
        for path in ("old", "new") if r % 2 == 0 else ("new", "old"):  # ABBA: cancels load drifting over time
            tr = trainers[path]
            t0 = time.perf_counter()
            for _ in range(cfg.speed_iters):
                tr._train_step()
            seconds[path].append(time.perf_counter() - t0)
    a, b = trainers["old"].method.state_dict(), trainers["new"].method.state_dict()
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fetch_us = {}  # the loader alone, without the (noisier) render: median time of one _next_batch
    for path, tr in trainers.items():
        times = []
        for _ in range(2000):
            t0 = time.perf_counter()
            tr._next_batch()
            times.append(time.perf_counter() - t0)
        fetch_us[path] = float(np.median(times) * 1e6)
    stats = trainers["new"].image_loader.stats()
    trainers["new"].image_loader.close()
    its = {p: cfg.speed_iters * len(s) / sum(s) for p, s in seconds.items()}
    return {
        "scene": cfg.speed_data, "method": cfg.speed_method, "resolution": list(scene.resolution),
        "train_views": len(trainers["new"].views), "iters_per_block": cfg.speed_iters, "rounds": cfg.speed_rounds,
        "it_s_old": its["old"], "it_s_new": its["new"], "ratio_new_old": its["new"] / its["old"],
        "block_it_s": {p: [cfg.speed_iters / x for x in s] for p, s in seconds.items()},
        "next_batch_us_old": fetch_us["old"], "next_batch_us_new": fetch_us["new"],
        "same_parameters": same, "loader": stats,
    }


def main(cfg: MemoryBench) -> int:
    load0 = os.getloadavg()
    rows = []
    if not cfg.skip_capture:
        t0 = time.perf_counter()
        data = build_capture(cfg)
        print(f"capture {data}: {cfg.cameras} cameras x {cfg.frames} frames at {cfg.size}^2 "
              f"(ready in {time.perf_counter() - t0:.0f} s)", flush=True)
        for gb in cfg.cache_gb:
            rows.append(train_capture(cfg, data, gb))
            print(f"  cache {gb:g} GiB: peak RSS {rows[-1]['peak_rss_gib']:.2f} GiB", flush=True)
    speed = None if cfg.skip_speed else compare_speed(cfg)
    load1 = os.getloadavg()

    views = (cfg.cameras - 1) * cfg.frames
    float32_gib = views * cfg.size**2 * 3 * 4 / GIB
    if rows:
        print(f"\n{cfg.method} on {views} training views at {cfg.size}x{cfg.size}, {cfg.iters} iterations "
              f"(uint8 images {views * cfg.size**2 * 3 / GIB:.2f} GiB; stacked as float32 {float32_gib:.2f} GiB)")
        print(f"{'--image-cache-gb':>16} {'budget GiB':>10} {'peak RSS GiB':>12} {'it/s':>6} {'train s':>8} {'PSNR':>6}")
        for r in rows:
            print(f"{r['cache_gb']:>16g} {r['cache_budget_gib']:>10.2f} {r['peak_rss_gib']:>12.2f} {r['it_s']:>6.2f} "
                  f"{r['train_s']:>8.0f} {r['psnr']:>6.2f}")
    if speed:
        _print_speed(speed)
    print(f"load average before / after: {load0[0]:.2f} / {load1[0]:.2f}")
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "numpy": np.__version__, "date": time.strftime("%Y-%m-%d"), "loadavg_before": load0, "loadavg_after": load1}
    capture = {"cameras": cfg.cameras, "frames": cfg.frames, "size": cfg.size, "train_views": views,
               "method": cfg.method, "iters": cfg.iters, "max_init_points": cfg.max_init_points,
               "max_gaussians": cfg.max_gaussians, "float32_stack_gib": float32_gib, "runs": rows}
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps({"meta": meta, "capture": capture, "speed": speed}, indent=2))
    print(f"wrote {cfg.out}")
    return 0


def _print_speed(s: dict) -> None:
    print(f"\n{s['method']} on {s['scene']} ({s['resolution'][0]}x{s['resolution'][1]}, {s['train_views']} views), "
          f"{s['rounds']} alternating blocks of {s['iters_per_block']} iterations per path")
    print(f"{'path':<34} {'it/s':>6} {'_next_batch us':>15}")
    print(f"{'float32 stacked up front (before)':<34} {s['it_s_old']:>6.2f} {s['next_batch_us_old']:>15.0f}")
    print(f"{'ViewLoader, cache holds all (now)':<34} {s['it_s_new']:>6.2f} {s['next_batch_us_new']:>15.0f}")
    print(f"new / old: {s['ratio_new_old']:.3f}; same parameters after training: {s['same_parameters']}")


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(MemoryBench)))
