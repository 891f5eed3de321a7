"""Rasterizer benchmark: CPU tiled kernels vs the dense torch reference, forward and forward+backward.

Prints a table and writes JSON. Scenes hold N Gaussians in a unit box in front of one camera, with
scales shrinking as N^(-1/3) so the covered screen area stays comparable across N (as in trained
scenes, where more Gaussians are smaller); the table reports tile intersections, which cost follows.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from splat4d import config_checks as cc
from splat4d.cameras import Cameras
from splat4d.render import rasterize

DENSE_LIMIT = 7e7  # N x pixels above which the dense reference would need many GB


@dataclass
class RasterBenchConfig:
    """Rasterizer benchmark: CPU kernels vs the dense torch reference (table + JSON)."""

    gaussians: tuple[int, ...] = (1000, 2000, 10000, 100000)
    """Gaussian counts."""
    resolutions: tuple[int, ...] = (128, 256, 512)
    """Square image sizes in pixels."""
    repeats: int = 5
    """Timed repetitions per cell (median reported)."""
    dense: bool = True
    """Also time the dense torch reference where N x pixels <= 7e7."""
    out: Path = Path("benchmarks/results/raster.json")
    """JSON output path."""

    def validate(self) -> None:
        cc.check_ints("--gaussians", self.gaussians, 1)
        cc.check_ints("--resolutions", self.resolutions, 1, 8192)
        cc.check_int("--repeats", self.repeats, 1)
        cc.check_bool("--dense", self.dense)
        cc.check_output_file("--out", self.out)

    def run(self) -> int:
        return main(self)


def make_scene(n: int, res: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    quats = torch.randn(n, 4, generator=g)
    s = 0.12 * (1000 / n) ** (1 / 3)
    scales = s * torch.exp(torch.randn(n, 3, generator=g) * 0.4)
    opac = torch.rand(n, generator=g) * 0.8 + 0.1
    colors = torch.rand(n, 3, generator=g)
    cam = Cameras.look_at([0.0, -3.5, 0.0], [0.0, 0.0, 0.0], fov_deg=50, width=res, height=res)
    return [means, quats, scales, opac, colors], cam


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (JIT, allocator)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000.0


def bench_cell(n: int, res: int, backend: str, repeats: int) -> dict:
    params, cam = make_scene(n, res)

    def fwd():
        with torch.no_grad():
            return rasterize(*params, cam, backend=backend)

    def fwd_bwd():
        ps = [p.clone().requires_grad_() for p in params]
        out = rasterize(*ps, cam, backend=backend)
        (out.rgb.sum() + out.alpha.sum()).backward()

    out = fwd()
    r = out.meta["radii"][0].float()
    isects = int((torch.ceil(r[:, 0] * 2 / 16 + 1) * torch.ceil(r[:, 1] * 2 / 16 + 1) * (r > 0).all(-1)).sum())
    return {
        "n": n, "res": res, "backend": backend, "fwd_ms": _time(fwd, repeats), "fwd_bwd_ms": _time(fwd_bwd, repeats),
        "tile_isects_approx": isects, "coverage": float(out.alpha.mean()),
    }


def run(cfg: RasterBenchConfig) -> list[dict]:
    rows = []
    for res in cfg.resolutions:
        for n in cfg.gaussians:
            row = bench_cell(n, res, "cpu", cfg.repeats)
            if cfg.dense and n * res * res <= DENSE_LIMIT:
                d = bench_cell(n, res, "torch", max(1, cfg.repeats // 2))
                row.update(dense_fwd_ms=d["fwd_ms"], dense_fwd_bwd_ms=d["fwd_bwd_ms"])
                row.update(speedup_fwd=d["fwd_ms"] / row["fwd_ms"], speedup_fwd_bwd=d["fwd_bwd_ms"] / row["fwd_bwd_ms"])
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


HEADER = f"{'N':>7} {'res':>5} {'isects':>8} {'cpu fwd':>9} {'cpu f+b':>9} {'dense fwd':>10} {'dense f+b':>10} {'x fwd':>7} {'x f+b':>7}"


def _format_row(r: dict) -> str:
    def f(k, w, fmt="{:.1f}"):
        return (fmt.format(r[k]) if k in r else "-").rjust(w)

    return (
        f"{r['n']:>7} {r['res']:>5} {r['tile_isects_approx']:>8} {f('fwd_ms', 9)} {f('fwd_bwd_ms', 9)} "
        f"{f('dense_fwd_ms', 10)} {f('dense_fwd_bwd_ms', 10)} {f('speedup_fwd', 7, '{:.0f}x')} {f('speedup_fwd_bwd', 7, '{:.0f}x')}"
    )


def main(cfg: RasterBenchConfig) -> int:
    import numba

    print(f"splat4d rasterizer benchmark: times in ms (median of {cfg.repeats}), float32 inputs, "
          f"{numba.get_num_threads()} numba threads, torch {torch.__version__}")
    print(HEADER)
    rows = run(cfg)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "processor": platform.processor(), "threads": numba.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    tmp = cfg.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    tmp.replace(cfg.out)
    print(f"wrote {cfg.out}")
    return 0
