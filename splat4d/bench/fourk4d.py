"""4K4D benchmark: held-out PSNR of `fourk4d` (trained and baked) against `deformable` at the same
iteration budget, per-frame render time of the training-time renderer, the baked renderer and
`deformable`'s (split into preparation and rasterization/peeling), the page faults and kernel CPU time of
each render, and the baked bytes per frame.
Writes `fourk4d_<scene>.json`; run folders go under out/fourk4d/ (deformable's are shared with the ADC-GS
benchmark, out/adcgs/<scene>_deformable, when they exist)."""

from __future__ import annotations

import json
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from splat4d.bench.adcgs import SCENES, _fit, _meta
from splat4d.data import load_scene
from splat4d.methods.base import get_method
from splat4d.train.evaluate import evaluate
from splat4d.train.run import DataConfig, load_run


@dataclass
class FourK4DBench:
    """fourk4d (trained, baked) vs deformable on one multi-view scene (table + JSON)."""

    scene: str = "synthetic:default"
    """synthetic:default or toss (or any synthetic:NAME with a rig schedule)."""
    iters: int = 3000
    """Iterations of every fit."""
    frames: int = 10
    """Test views timed, three times each, the renderers taking turns on each view (after one warm-up)."""
    out: Path = Path("benchmarks/results")
    """fourk4d_<scene>.json goes here; run folders under out/fourk4d/."""
    resume: bool = True
    """Reuse run folders that already hold a finished fit."""

    def validate(self) -> None:
        from splat4d import config_checks as cc

        if not self.scene.startswith("synthetic:"):
            cc.check_choice("--scene", self.scene, ("toss",))
        cc.check_int("--iters", self.iters, 1)
        cc.check_int("--frames", self.frames, 1)
        cc.check_output_dir("--out", self.out)


@torch.no_grad()
def render_times(methods: list, scene, frames: int, rounds: int = 3) -> tuple[list[list[float]], list[dict]]:
    """Ms per rendered test view (the whole render call) of each method, interleaved: every view is
    rendered by each method in turn, `rounds` times over the first `frames` test views, after one warm-up
    each, so a change in the machine's load falls on every method alike. [method][round * view]; and per
    method the mean page faults and kernel (system) CPU ms per render: a renderer that allocates large
    temporaries spends time faulting fresh pages in, which varies with the host far more than arithmetic."""
    views = scene.split("test")[:frames]
    bg = torch.tensor(scene.background)
    for m in methods:
        m.render(scene.camera(views[0]), float(views[0].time), bg)
    ms: list[list[float]] = [[] for _ in methods]
    kernel = [{"page_faults": 0.0, "system_ms": 0.0} for _ in methods]
    for _ in range(rounds):
        for v in views:
            cam = scene.camera(v)
            for m, out, k in zip(methods, ms, kernel):
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                m.render(cam, float(v.time), bg)
                t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                out.append((t1 - t0) * 1e3)
                k["page_faults"] += (r1.ru_minflt - r0.ru_minflt) / (rounds * len(views))
                k["system_ms"] += (r1.ru_stime - r0.ru_stime) * 1e3 / (rounds * len(views))
    return ms, kernel


@torch.no_grad()
def baked_split_ms(baked, scene, frames: int) -> dict[str, float]:
    """Median ms per test view of the baked renderer's parts: the point colours (choosing the source
    views, blending them, the SH residual) in numba of the points some pixel composites (`colors_ms`, as a
    render shades them) and in torch of every point (`colors_torch_ms`, the slow twin), and the depth peel
    (projection, selection and compositing, `peel_ms`)."""
    from splat4d.methods.fourk4d import ibr
    from splat4d.render.points_cpu import used_points

    views = scene.split("test")
    bg = torch.tensor(scene.background)
    parts: dict[str, list[float]] = {"colors_ms": [], "colors_torch_ms": [], "peel_ms": []}
    for i in range(min(frames, len(views)) + 1):
        v = views[i % len(views)]
        cam = scene.camera(v)
        eye = cam.centers[0]
        f = ibr.nearest_frame(baked.frame_times, float(v.time))
        need = used_points(baked.means[f], baked.radii[f], cam, baked.cfg.k_render, baked.disc_normals)
        t0 = time.perf_counter()
        colors = baked.point_colors(f, eye, need=need)
        t1 = time.perf_counter()
        baked.point_colors(f, eye, fused=False)
        t2 = time.perf_counter()
        baked.peel(f, colors, cam, bg)
        t3 = time.perf_counter()
        if i:
            for key, ms in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(ms * 1e3)
    return {key: statistics.median(ms) for key, ms in parts.items()}


@torch.no_grad()
def baked_difference(trained, baked, scene) -> float:
    """Largest absolute pixel difference between the trained and the baked renderer over the test views."""
    bg = torch.tensor(scene.background)
    worst = 0.0
    for v in scene.split("test"):
        a = trained.render(scene.camera(v), float(v.time), bg).rgb
        b = baked.render(scene.camera(v), float(v.time), bg).rgb
        worst = max(worst, float((a - b).abs().max()))
    return worst


def run(cfg: FourK4DBench) -> dict:
    from splat4d.methods.fourk4d.baked import bake_run

    path, scale = SCENES.get(cfg.scene, (cfg.scene, 1.0))
    data = DataConfig(path, scale)
    key = cfg.scene.replace(":", "_")
    base_dir = cfg.out / "adcgs" / f"{key}_deformable"
    _fit("deformable", get_method("deformable").Config(), data, cfg.iters, base_dir, cfg.resume)
    run_dir = cfg.out / "fourk4d" / f"{key}_fourk4d"
    _fit("fourk4d", get_method("fourk4d").Config(), data, cfg.iters, run_dir, cfg.resume)
    baked_dir = cfg.out / "fourk4d" / f"{key}_fourk4d_baked"
    if baked_dir.exists():
        import shutil

        shutil.rmtree(baked_dir)
    bake_run(run_dir, baked_dir)
    rows, methods = [], []
    scene = None
    for name, folder in (("deformable", base_dir), ("fourk4d", run_dir), ("fourk4d baked", baked_dir)):
        method, config, _ = load_run(folder, "cpu")
        if scene is None:
            scene = load_scene(path, scale=scale, background=config["data"]["background"])
        r = evaluate(method, scene)
        row = {"method": name, "psnr": r["psnr"], "ssim": r["ssim"], "primitives": method.num_primitives}
        if name == "fourk4d baked":
            b = sum(t.numel() * t.element_size() for t in method.state_dict().values())
            row["baked_mb_per_frame"] = b / method.means.shape[0] / 1e6
            row["split_ms"] = baked_split_ms(method, scene, cfg.frames)
        rows.append(row)
        methods.append(method)
    times, kernel = render_times(methods, scene, cfg.frames)
    for r, ms, k in zip(rows, times, kernel):
        q1, r["render_ms"], q3 = statistics.quantiles(ms, n=4)
        r["render_ms_quartiles"] = [q1, q3]
        r["page_faults_per_frame"], r["system_ms_per_frame"] = k["page_faults"], k["system_ms"]
    # each view's trained and baked renders ran back to back: the median of those ratios
    rows[2]["speedup_vs_trained_paired"] = statistics.median([a / b for a, b in zip(times[1], times[2])])
    for r in rows:
        r["psnr_minus_deformable"] = r["psnr"] - rows[0]["psnr"]
        r["speedup_vs_deformable"] = rows[0]["render_ms"] / r["render_ms"]
    rows[2]["speedup_vs_trained"] = rows[1]["render_ms"] / rows[2]["render_ms"]
    rows[2]["max_abs_vs_trained"] = baked_difference(load_run(run_dir, "cpu")[0], load_run(baked_dir, "cpu")[0], scene)
    result = {"meta": _meta(cfg), "rows": rows}
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / f"fourk4d_{key}.json").write_text(json.dumps(result, indent=2))
    print(f"\n{cfg.scene}, {cfg.iters} iterations")
    print(f"{'method':<14} {'PSNR':>6} {'dPSNR':>6} {'SSIM':>6} {'ms/frame':>8} {'x deformable':>12} "
          f"{'faults/frame':>12} {'system ms':>9}")
    for r in rows:
        print(f"{r['method']:<14} {r['psnr']:6.2f} {r['psnr_minus_deformable']:+6.2f} {r['ssim']:6.3f} "
              f"{r['render_ms']:8.1f} {r['speedup_vs_deformable']:12.1f} {r['page_faults_per_frame']:12.0f} "
              f"{r['system_ms_per_frame']:9.1f}")
    print(f"baked: {rows[2]['speedup_vs_trained']:.1f}x faster than the training-time renderer (median of "
          f"view-by-view ratios {rows[2]['speedup_vs_trained_paired']:.1f}x), "
          f"{rows[2]['baked_mb_per_frame']:.2f} MB per frame, max abs difference {rows[2]['max_abs_vs_trained']:.2e}")
    print("baked ms per frame: " + ", ".join(f"{k[:-3]} {v:.1f}" for k, v in rows[2]["split_ms"].items())
          + " (colors_torch: the torch twin, not part of a render)")
    return result
