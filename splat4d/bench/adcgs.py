"""ADC-GS benchmark: size, quality, coding efficiency and render speed against `deformable`.

For one scene and one iteration budget: `deformable` with its defaults, then `adcgs` at every lambda_e;
each adcgs run is compressed to a .s4d, decoded, and the decoded model evaluated. Per row: bytes of the
.s4d (or, for deformable, its checkpoint tensors, `size_mb`), the size ratio, test PSNR / SSIM, encode and
decode seconds, bytes written / estimated per entropy-coded section, and per-frame time split into
deformation (everything before the rasterizer) and rasterization. Writes `adcgs_<scene>.json`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from splat4d.data import load_scene
from splat4d.methods.base import get_method
from splat4d.train.evaluate import evaluate
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SCENES = {
    "synthetic:default": ("synthetic:default", 1.0),
    "dnerf": (str(SHARED / "dnerf-scene3-collision"), 0.25),
    "toss": (str(SHARED / "mujoco-toss-12cam"), 0.5),
}
"""Scenes of the issue's size target: synthetic default, D-NeRF collision at 200x200, the MuJoCo capture at 128x128."""


@dataclass
class ADCGSBench:
    """ADC-GS vs deformable on one scene (table + JSON)."""

    scene: str = "synthetic:default"
    """synthetic:default, dnerf or toss (or any synthetic:NAME)."""
    iters: int = 3000
    """Iterations of every fit."""
    lambdas: tuple[float, ...] = field(default_factory=lambda: (1e-2, 1e-3, 1e-4))
    """Rate weights lambda_e of the adcgs runs."""
    out: Path = Path("benchmarks/results")
    """adcgs_<scene>.json goes here; run folders and bitstreams under out/adcgs/."""
    resume: bool = True
    """Reuse run folders that already hold a finished fit."""
    speed_only: bool = False
    """Only time the deformation of both methods at the Gaussian counts of `counts` (untrained models, no
    fits); writes adcgs_speed_<scene>.json."""
    counts: tuple[int, ...] = field(default_factory=lambda: (24480, 50000))
    """Gaussian counts of the speed-only timing."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds. With several, both methods are fitted once per seed and every row gives the mean
    PSNR, SSIM and bytes over them (with the per-seed values): one fit of either method on the MuJoCo
    capture moves by 0.4 dB with the thread count alone. Timings come from the first seed's fits, coding
    efficiency is the worst over seeds. Writes adcgs_<scene>_seeds<a-b-...>.json."""

    def validate(self) -> None:
        from splat4d import config_checks as cc

        if not self.scene.startswith("synthetic:"):
            cc.check_choice("--scene", self.scene, tuple(SCENES))
        cc.check_int("--iters", self.iters, 1)
        cc.check_floats("--lambdas", self.lambdas, 0)
        for n in self.counts:
            cc.check_int("--counts", n, 1)
        if not self.seeds:
            raise cc.ConfigError("--seeds: give at least one seed")
        for n in self.seeds:
            cc.check_int("--seeds", n, 0, 2**32 - 1)
        cc.check_output_dir("--out", self.out)


def _fit(name: str, cfg, data: DataConfig, iters: int, run_dir: Path, resume: bool, seed: int = 0) -> None:
    if resume and (run_dir / "metrics.json").is_file():
        return
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    fit(name, cfg, data, TrainConfig(iters=iters, save_every=0, seed=seed), run_dir, progress=True)


@torch.no_grad()
def frame_times(method, scene, frames: int = 10) -> dict:
    """Median ms per frame of the deformation (all work before the rasterizer: networks, deformed
    attributes) and of the rasterizer, over test views, and the number of Gaussians drawn."""
    from splat4d.methods.adcgs.anchors import render_colors
    from splat4d.render import rasterize

    split = "test" if scene.split("test") else "train"
    views, cams = scene.split(split), scene.cameras(split)
    bg = torch.tensor(scene.background)
    deform, raster, drawn = [], [], []
    for i in range(min(frames, len(views)) + 1):
        t = float(views[i % len(views)].time)
        t0 = time.perf_counter()
        if method.name == "adcgs":
            g = method.primitives_at(t)
            colors, degree = render_colors(g)
        else:
            g = method.gaussians_at(t)
            colors, degree = g["sh"], int(method.active_sh)
        t1 = time.perf_counter()
        rasterize(g["means"], g["quats"], g["scales"], g["opacities"], colors, cams[i % len(views)], background=bg,
                  sh_degree=degree)
        t2 = time.perf_counter()
        if i:  # the first is a warm-up
            deform.append((t1 - t0) * 1e3)
            raster.append((t2 - t1) * 1e3)
            drawn.append(len(g["means"]))
    med = lambda x: sorted(x)[len(x) // 2]  # noqa: E731
    return {"deform_ms": med(deform), "raster_ms": med(raster), "gaussians_drawn": med(drawn)}


@torch.no_grad()
def deformation_at_equal_count(scene, gaussians: int, frames: int = 30) -> dict:
    """Median ms of the deformation alone (everything before the rasterizer) for `deformable` and `adcgs`
    with their default networks at the same number of Gaussians (`gaussians`; adcgs: gaussians / K
    anchors), as the issue's speed target asks. Untrained models: the work per frame does not depend on
    the values (every primitive is drawn at the initial opacity). Returns both times and their ratio."""
    from splat4d.gaussians import Gaussians

    gen = torch.Generator().manual_seed(0)
    deformable = get_method("deformable").from_scene(scene, get_method("deformable").Config(), gen)
    g = deformable.gaussians
    idx = torch.randint(len(g.means), (gaussians,), generator=gen)
    deformable.gaussians = Gaussians(*(getattr(g, k)[idx] for k in g.fields))
    deformable.dynamic.fill_(True)
    adc = get_method("adcgs").from_scene(scene, get_method("adcgs").Config(), gen)
    f, k = adc.field, adc.cfg.k
    idx = torch.randint(len(f), (max(gaussians // k, 1),), generator=gen)
    adc.field = f.subset(idx)
    adc.warmup_iters.fill_(0)
    adc.quantise_iters.fill_(0)
    times = [float(v.time) for v in scene.split("train")]
    draws = {"deformable": deformable.gaussians_at, "adcgs": adc.primitives_at}
    for model in (deformable, adc):
        model.eval()
    ms, count = {name: [] for name in draws}, {}
    for i in range(frames + 1):  # the two alternate, so both see the same load on the machine
        for name, draw in draws.items():
            t0 = time.perf_counter()
            count[name] = len(draw(times[i % len(times)])["means"])
            if i:  # the first is a warm-up (and computes adcgs's canonical primitives)
                ms[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name in draws:
        out[f"{name}_deform_ms"] = sorted(ms[name])[len(ms[name]) // 2]
        out[f"{name}_gaussians"] = count[name]
    out["speedup"] = out["deformable_deform_ms"] / out["adcgs_deform_ms"]
    return out


def _meta(cfg: ADCGSBench) -> dict:
    return {"scene": cfg.scene, "iters": cfg.iters, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def speed_only(cfg: ADCGSBench) -> dict:
    path, scale = SCENES.get(cfg.scene, (cfg.scene, 1.0))
    scene = load_scene(path, scale=scale)
    rows = [deformation_at_equal_count(scene, n) for n in cfg.counts]
    result = {"meta": {**_meta(cfg), "iters": None, "command": "python benchmarks/adcgs.py --speed-only"}, "rows": rows}
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / f"adcgs_speed_{cfg.scene.replace(':', '_')}.json").write_text(json.dumps(result, indent=2))
    print(f"{'Gaussians':>9} {'deformable ms':>13} {'adcgs ms':>8} {'speed-up':>8}")
    for r in rows:
        print(f"{r['deformable_gaussians']:>9} {r['deformable_deform_ms']:13.1f} {r['adcgs_deform_ms']:8.1f} "
              f"{r['speedup']:7.1f}x")
    return result


def run(cfg: ADCGSBench) -> dict:
    from splat4d.commands_codec import compress_run

    if cfg.speed_only:
        return speed_only(cfg)
    path, scale = SCENES.get(cfg.scene, (cfg.scene, 1.0))  # any other synthetic:NAME at full size
    data = DataConfig(path, scale)
    root = cfg.out / "adcgs"
    key = cfg.scene.replace(":", "_")
    runs: list[list[dict]] = []  # per seed: the deformable row, then one adcgs row per lambda
    for seed in cfg.seeds:
        tag = f"_s{seed}" if seed else ""
        base_dir = root / f"{key}_deformable{tag}"
        _fit("deformable", get_method("deformable").Config(), data, cfg.iters, base_dir, cfg.resume, seed)
        base, base_config, _ = load_run(base_dir, "cpu")
        d = json.loads((base_dir / "metrics.json").read_text())["test"]
        scene = load_scene(path, scale=scale, background=base_config["data"]["background"])
        timed = seed == cfg.seeds[0]
        rows = [{"method": "deformable", "lambda_e": None, "bytes": round(d["size_mb"] * 1e6), "psnr": d["psnr"],
                 "ssim": d["ssim"], **(frame_times(base, scene) if timed else {})}]
        for lam in cfg.lambdas:
            run_dir = root / f"{key}_adcgs_{lam:g}{tag}"
            _fit("adcgs", get_method("adcgs").Config(lambda_e=lam), data, cfg.iters, run_dir, cfg.resume, seed)
            rows.append(_adcgs_row(run_dir, root / f"{key}_adcgs_{lam:g}{tag}.s4d", lam, scene, timed))
        runs.append(rows)
    rows = [_mean_row([seed_rows[i] for seed_rows in runs]) if len(runs) > 1 else runs[0][i]
            for i in range(len(runs[0]))]
    for i, r in enumerate(rows):
        r["size_ratio"] = rows[0]["bytes"] / r["bytes"]
        r["psnr_minus_deformable"] = r["psnr"] - rows[0]["psnr"]
        if len(runs) > 1:  # paired by seed: a seed where either fit failed shows as an outlier here
            r["psnr_minus_deformable_seeds"] = [seed_rows[i]["psnr"] - seed_rows[0]["psnr"] for seed_rows in runs]
    equal = deformation_at_equal_count(scene, rows[0]["gaussians_drawn"])
    meta = {**_meta(cfg), "seeds": list(cfg.seeds)}
    result = {"meta": meta, "rows": rows, "deformation_at_equal_count": equal}
    cfg.out.mkdir(parents=True, exist_ok=True)
    name = f"adcgs_{key}.json" if cfg.seeds == (0,) else f"adcgs_{key}_seeds{'-'.join(map(str, cfg.seeds))}.json"
    (cfg.out / name).write_text(json.dumps(result, indent=2))
    print_table(result)
    return result


def _adcgs_row(run_dir: Path, s4d: Path, lam: float, scene, timed: bool) -> dict:
    """Compress a fitted adcgs run to `s4d`, decode it and evaluate the decoded model."""
    from splat4d.commands_codec import compress_run

    report = compress_run(run_dir, s4d)
    t0 = time.perf_counter()
    method, _, _ = load_run(s4d, "cpu")
    decode_s = time.perf_counter() - t0
    r = evaluate(method, scene)
    eff = {k: v["bytes"] * 8 / v["estimated_bits"] for k, v in report["sections"].items() if v["estimated_bits"]}
    return {"method": "adcgs", "lambda_e": lam, "bytes": s4d.stat().st_size, "psnr": r["psnr"], "ssim": r["ssim"],
            "encode_s": report["encode_seconds"], "decode_s": decode_s, "written_over_estimated": eff,
            "anchors": len(method.field), **(frame_times(method, scene) if timed else {})}


def _mean_row(per_seed: list[dict]) -> dict:
    """One row over seeds: the first seed's row (its timings) with PSNR, SSIM and bytes averaged (the
    per-seed values kept beside them) and each section's coding efficiency the worst over seeds."""
    row = dict(per_seed[0])
    for k in ("psnr", "ssim", "bytes"):
        values = [r[k] for r in per_seed]
        row[f"{k}_seeds"] = values
        row[k] = sum(values) / len(values)
    row["bytes"] = round(row["bytes"])
    row["psnr_std"] = float(torch.tensor(row["psnr_seeds"]).std()) if len(per_seed) > 1 else 0.0
    if "written_over_estimated" in row:
        row["written_over_estimated"] = {k: max(r["written_over_estimated"][k] for r in per_seed)
                                         for k in row["written_over_estimated"]}
    return row


def _per_seed(row: dict) -> str:
    text = f"  PSNR per seed {' / '.join(f'{p:.2f}' for p in row['psnr_seeds'])}"
    if row["method"] != "deformable":
        text += f" (vs deformable {' / '.join(f'{d:+.2f}' for d in row['psnr_minus_deformable_seeds'])})"
    return text


def print_table(result: dict) -> None:
    seeds = result["meta"].get("seeds", [0])
    over = f", mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    print(f"\n{result['meta']['scene']}, {result['meta']['iters']} iterations{over}")
    print(f"{'method':<11} {'lambda_e':>8} {'bytes':>10} {'x smaller':>9} {'PSNR':>6} {'dPSNR':>6} {'SSIM':>6} "
          f"{'deform ms':>9} {'raster ms':>9} {'drawn':>7}")
    for r in result["rows"]:
        lam = f"{r['lambda_e']:g}" if r["lambda_e"] is not None else "-"
        print(f"{r['method']:<11} {lam:>8} {r['bytes']:>10} {r['size_ratio']:9.1f} {r['psnr']:6.2f} "
              f"{r['psnr_minus_deformable']:+6.2f} {r['ssim']:6.3f} {r['deform_ms']:9.1f} {r['raster_ms']:9.1f} "
              f"{r['gaussians_drawn']:>7}" + (_per_seed(r) if "psnr_seeds" in r else ""))
    e = result.get("deformation_at_equal_count")
    if e:
        print(f"deformation alone at {e['deformable_gaussians']} Gaussians: deformable {e['deformable_deform_ms']:.1f} ms, "
              f"adcgs {e['adcgs_deform_ms']:.1f} ms ({e['speedup']:.1f}x faster)")
