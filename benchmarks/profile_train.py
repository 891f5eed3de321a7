"""Where a training iteration's time goes on the CPU: deformation field, projection/SH, rasterizer kernels
(forward and backward), loss, optimiser, densification. Prints a table and writes JSON.

Usage: python benchmarks/profile_train.py [--method deformable] [--data synthetic:default] [--scale 1] [--iters 200]
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from splat4d.data import load_scene
from splat4d.methods.base import get_method
from splat4d.render.cpu_kernels import start_threads
from splat4d.train.trainer import TrainConfig, Trainer


@dataclass
class ProfileBench:
    """What to profile."""

    method: str = "deformable"
    """Method name."""
    data: str = "synthetic:default"
    """Dataset."""
    scale: float = 1.0
    """Resolution scale."""
    background: str = "black"
    """Background colour."""
    warmup: int = 200
    """Iterations run before timing (past the coarse stage so deformation is on)."""
    iters: int = 100
    """Timed iterations."""
    max_init_points: int = 0
    """If > 0, cap the initial point cloud (as benchmarks/quality.py --max-init-points)."""
    torch_threads: int = 1
    """Torch intra-op threads (training's default is 1; 0 keeps torch's default)."""
    top: int = 8
    """How many of the largest uncategorised ops to list."""
    out: Path = Path("benchmarks/results/profile_train.json")
    """JSON output."""


# profiler event name parts -> category, first match wins (self CPU time is summed, so nothing is counted
# twice); backward nodes of autograd Functions show up as "...: <Name>Backward"
CATEGORIES = [
    ("composite bwd (numba)", ("_CompositeCPUBackward",)),
    ("composite fwd (numba)", ("_CompositeCPU",)),
    ("hexplane bwd (numba)", ("HexPlaneCPUBackward",)),
    ("hexplane fwd (numba)", ("HexPlaneCPU",)),
    ("hexplane (grid_sample)", ("aten::grid_sampler", "GridSampler")),
    ("MLP (linear)", ("aten::addmm", "aten::mm", "AddmmBackward", "MmBackward", "aten::relu", "ReluBackward", "aten::threshold_backward")),
    ("optimizer (Adam)", ("Optimizer.step", "aten::_foreach", "aten::lerp", "aten::addcmul", "aten::addcdiv", "aten::sqrt")),
]


def main(cfg: ProfileBench) -> int:
    scene = load_scene(cfg.data, scale=cfg.scale, background=cfg.background)
    cls = get_method(cfg.method)
    mcfg = cls.Config()
    if cfg.max_init_points > 0:
        mcfg.max_init_points = cfg.max_init_points
    method = cls.from_scene(scene, mcfg, torch.Generator().manual_seed(0))
    total = cfg.warmup + cfg.iters
    tr = Trainer(method, scene, TrainConfig(iters=total, save_every=0), Path("/tmp/splat4d-profile"),
                 {"method": cfg.method}, torch.device("cpu"))
    if cfg.torch_threads:  # as Trainer.fit: numba's pool first, or its first launch undoes this
        start_threads()
        torch.set_num_threads(cfg.torch_threads)
    for _ in range(cfg.warmup):
        tr._train_step()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(cfg.iters):
            tr._train_step()
    wall = (time.perf_counter() - t0) / cfg.iters * 1000
    cats: dict[str, float] = defaultdict(float)
    others: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        self_ms = e.self_cpu_time_total / 1000 / cfg.iters
        name = next((c for c, parts in CATEGORIES if any(p in e.key for p in parts)), "other torch ops")
        cats[name] += self_ms
        if name == "other torch ops":
            others[e.key] += self_ms
    profiled = sum(cats.values())
    print(f"{cfg.method} on {scene.name} {scene.resolution[0]}x{scene.resolution[1]}, "
          f"{tr.method.num_primitives} primitives, {torch.get_num_threads()} torch threads")
    print(f"wall time per iteration (profiled): {wall:.1f} ms  ({1000 / wall:.1f} it/s)")
    print(f"{'category':<26} {'ms/it':>8} {'share':>7}")
    rows = sorted(cats.items(), key=lambda kv: -kv[1])
    for name, ms in rows:
        print(f"{name:<26} {ms:8.2f} {100 * ms / profiled:6.1f}%")
    print(f"{'python / untracked':<26} {max(wall - profiled, 0):8.2f}")
    top = sorted(others.items(), key=lambda kv: -kv[1])[:cfg.top]
    print("largest 'other torch ops': " + ", ".join(f"{k} {v:.1f}" for k, v in top))
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps({"wall_ms": wall, "categories_ms": dict(rows), "primitives": tr.method.num_primitives,
                                   "scene": scene.name, "resolution": scene.resolution}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(ProfileBench)))
