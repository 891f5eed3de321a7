"""Where a training iteration's time goes on the CPU: deformation field, projection/SH, rasterizer kernels
(forward and backward), loss, optimiser, densification. Prints a table and writes JSON.

`--compare` profiles the unfused path (`fused_cpu` False: torch ops for projection, SH, SSIM, the HexPlane
regularisers and the deformation heads, the previous HexPlane kernels, single-tensor Adam) and the fused
one in the same process: same seed, same warm-up, timed in alternating rounds so that other work on the
machine weighs on both alike. It prints both tables and the speed-up and writes both into the JSON.

Usage: python benchmarks/profile_train.py [--method deformable] [--data synthetic:default] [--scale 1] [--iters 200]
       [--compare]
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numba
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
    """Timed iterations (per variant with --compare)."""
    max_init_points: int = 0
    """If > 0, cap the initial point cloud (as benchmarks/quality.py --max-init-points)."""
    torch_threads: int = 1
    """Torch intra-op threads (training's default is 1; 0 keeps torch's default)."""
    fused_cpu: bool = True
    """The method's `fused_cpu` setting (without --compare)."""
    compare: bool = False
    """Profile fused_cpu False (the unfused path) and True in this process and report the speed-up."""
    rounds: int = 4
    """With --compare: the timed iterations of each variant are split into this many alternating rounds."""
    top: int = 8
    """How many of the largest uncategorised ops to list."""
    out: Path = Path("benchmarks/results/profile_train.json")
    """JSON output."""


# profiler event name parts -> category, first match wins (self CPU time is summed, so nothing is counted
# twice); backward nodes of autograd Functions show up as "...: <Name>Backward"
CATEGORIES = [
    ("composite bwd (numba)", ("_CompositeCPUBackward",)),
    ("composite fwd (numba)", ("_CompositeCPU",)),
    ("projection+SH bwd (numba)", ("_ProjectCPUBackward",)),
    ("projection+SH fwd (numba)", ("_ProjectCPU",)),
    ("hexplane reg (numba)", ("HexPlaneRegCPU",)),
    ("hexplane bwd (numba)", ("HexPlaneCPUBackward",)),
    ("hexplane fwd (numba)", ("HexPlaneCPU",)),
    ("hexplane (grid_sample)", ("aten::grid_sampler", "GridSampler")),
    ("SSIM (numba)", ("_SSIMCPU",)),
    ("SSIM (torch conv)", ("aten::conv", "aten::_conv", "mkldnn_convolution", "convolution_backward",
                           "ConvolutionBackward")),
    ("MLP (linear)", ("aten::addmm", "aten::mm", "AddmmBackward", "MmBackward", "aten::relu", "ReluBackward",
                      "aten::threshold_backward", "_MLPRows")),
    ("optimizer (Adam)", ("Optimizer.step", "aten::_foreach", "aten::_fused_adam", "aten::lerp", "aten::addcmul",
                          "aten::addcdiv", "aten::sqrt")),
]


def build(cfg: ProfileBench, scene, fused_cpu: bool) -> Trainer:
    cls = get_method(cfg.method)
    mcfg = cls.Config()
    if cfg.max_init_points > 0:
        mcfg.max_init_points = cfg.max_init_points
    if hasattr(mcfg, "fused_cpu"):
        mcfg.fused_cpu = fused_cpu
    method = cls.from_scene(scene, mcfg, torch.Generator().manual_seed(0))
    total = cfg.warmup + cfg.iters
    return Trainer(method, scene, TrainConfig(iters=total, save_every=0), Path("/tmp/splat4d-profile"),
                   {"method": cfg.method}, torch.device("cpu"))


class Tally:
    """Wall time and profiler self-CPU time per category of one variant, summed over rounds."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.iters = 0
        self.cats: dict[str, float] = defaultdict(float)
        self.others: dict[str, float] = defaultdict(float)

    def run(self, tr: Trainer, n: int) -> None:
        t0 = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                tr._train_step()
        self.wall += time.perf_counter() - t0
        self.iters += n
        for e in prof.key_averages():
            us = e.self_cpu_time_total
            name = next((c for c, parts in CATEGORIES if any(p in e.key for p in parts)), "other torch ops")
            self.cats[name] += us
            if name == "other torch ops":
                self.others[e.key] += us

    def report(self, title: str, top: int) -> dict:
        wall = self.wall / self.iters * 1000
        cats = {k: v / 1000 / self.iters for k, v in self.cats.items()}
        profiled = sum(cats.values())
        print(title)
        print(f"wall time per iteration (profiled): {wall:.1f} ms  ({1000 / wall:.1f} it/s)")
        print(f"{'category':<26} {'ms/it':>8} {'share':>7}")
        rows = sorted(cats.items(), key=lambda kv: -kv[1])
        for name, ms in rows:
            print(f"{name:<26} {ms:8.2f} {100 * ms / profiled:6.1f}%")
        print(f"{'python / untracked':<26} {max(wall - profiled, 0):8.2f}")
        others = sorted(self.others.items(), key=lambda kv: -kv[1])[:top]
        print("largest 'other torch ops': " + ", ".join(f"{k} {v / 1000 / self.iters:.1f}" for k, v in others))
        return {"wall_ms": wall, "categories_ms": dict(rows), "python_untracked_ms": max(wall - profiled, 0)}


def main(cfg: ProfileBench) -> int:
    scene = load_scene(cfg.data, scale=cfg.scale, background=cfg.background)
    variants = [False, True] if cfg.compare else [cfg.fused_cpu]
    trainers = {f: build(cfg, scene, f) for f in variants}
    if cfg.torch_threads:  # as Trainer.fit: numba's pool first, or its first launch undoes this
        start_threads()
        torch.set_num_threads(cfg.torch_threads)
    for tr in trainers.values():
        for _ in range(cfg.warmup):
            tr._train_step()
    tallies = {f: Tally() for f in variants}
    rounds = max(1, min(cfg.rounds, cfg.iters)) if cfg.compare else 1
    for r in range(rounds):
        n = cfg.iters // rounds + (1 if r < cfg.iters % rounds else 0)
        for f in variants:
            tallies[f].run(trainers[f], n)
    tr = trainers[variants[-1]]
    print(f"{cfg.method} on {scene.name} {scene.resolution[0]}x{scene.resolution[1]}, "
          f"{tr.method.num_primitives} primitives, {torch.get_num_threads()} torch threads, "
          f"{numba.get_num_threads()} numba threads ({numba.threading_layer()}), load average "
          f"{os.getloadavg()[0]:.2f}")
    result = {"primitives": tr.method.num_primitives, "scene": scene.name, "resolution": scene.resolution,
              "iters": cfg.iters, "warmup": cfg.warmup, "numba_threading_layer": numba.threading_layer(),
              "load_average_1min": os.getloadavg()[0]}
    if cfg.compare:
        old = tallies[False].report("\n== fused_cpu False (unfused torch ops, previous kernels) ==", cfg.top)
        new = tallies[True].report("\n== fused_cpu True ==", cfg.top)
        speedup = old["wall_ms"] / new["wall_ms"]
        print(f"\nspeed-up: {old['wall_ms']:.1f} -> {new['wall_ms']:.1f} ms/it = {speedup:.2f}x iterations/s "
              f"({rounds} alternating rounds of ~{cfg.iters // rounds} iterations each)")
        result.update(old=old, new=new, speedup=speedup, rounds=rounds)
    else:
        result.update(tallies[variants[0]].report("", cfg.top), fused_cpu=variants[0])
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(ProfileBench)))
