"""ADC-GS diagnostics behind docs/benchmarks.md ("Fifth session", "Eighth session"); each prints and writes JSON.

rows RUN: test PSNR of a finished adcgs run as it is, and with every time-table row that no training view
    reads replaced by the interpolation of its trained neighbours (nothing retrained): how much untrained
    rows cost when the test times are not training times (D-NeRF).
prune --seed S --until N [--setting name=value ...]: fits adcgs on D-NeRF collision 200x200 (3000-iteration
    schedule) and records, at every refinement up to iteration N, what was grown and pruned, how many
    anchors were seen, and the quantiles of each seen anchor's largest opacity.
opacity --seed S --until N [--setting name=value ...]: the same fit, recording every 25 iterations the
    quantiles of the canonical opacity (eq. 1's network), the fraction of primitives it leaves drawable and
    the fraction visible at t = 0.5: whether a fit's opacity dies before the first refinement.
regions REFERENCE RUN [RUN ...] [--split train]: test-view (or `split`) PSNR of each run (any method, all on one masked capture) over
    three regions: the foreground masks ("object"), pixels outside them that show the background colour
    ("sky": every channel within 0.06 of it) and the rest ("floor"); and each run's whole-image PSNR with
    one region's errors replaced by REFERENCE's (how much of the gap to REFERENCE that region holds);
    --out PATH writes the JSON there instead of over the stored results file.

Usage: python benchmarks/adcgs_diagnostics.py rows benchmarks/results/adcgs/dnerf_adcgs_0.001
       python benchmarks/adcgs_diagnostics.py prune --seed 1 --until 400 --setting time_smooth=2
       python benchmarks/adcgs_diagnostics.py regions benchmarks/results/adcgs/toss_deformable \
           benchmarks/results/adcgs/toss_adcgs_0.001
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results"


def meta() -> dict:
    return {"date": __import__("time").strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "load_average": os.getloadavg()}


def untrained_rows(run: Path) -> dict:
    from splat4d.data import load_scene
    from splat4d.train.evaluate import evaluate
    from splat4d.train.run import load_run, run_data_config

    method, config, _ = load_run(run)
    d = run_data_config(config, run)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    Z = method.field.time_table.table.data
    n = Z.shape[0]
    trained = sorted({round(float(v.time) * (n - 1)) for v in scene.split("train")})
    before = evaluate(method, scene)["psnr"]
    patched = Z.clone()
    for k in sorted(set(range(n)) - set(trained)):
        lo = max((r for r in trained if r < k), default=None)
        hi = min((r for r in trained if r > k), default=None)
        if lo is None or hi is None:
            patched[k] = Z[hi if lo is None else lo]
        else:
            w = (k - lo) / (hi - lo)
            patched[k] = (1 - w) * Z[lo] + w * Z[hi]
    Z.copy_(patched)
    method._eval_attrs = method._eval_drawn = None
    after = evaluate(method, scene)["psnr"]
    return {"run": str(run), "rows": n, "rows_read_in_training": len(trained), "psnr": before,
            "psnr_untrained_rows_interpolated": after}


REGIONS = ("object", "floor", "sky")


@torch.no_grad()
def squared_errors(run: Path, split: str | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(per view of `split` (default: the test split): squared error [H, W, 3] of the run's render, region index [H, W] by REGIONS)."""
    from splat4d.data import load_scene
    from splat4d.errors import DatasetError
    from splat4d.train.evaluate import eval_split
    from splat4d.train.run import load_run, run_data_config

    method, config, _ = load_run(run, "cpu")
    d = run_data_config(config, run)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    split = split or eval_split(scene)
    bg = torch.tensor(scene.background, dtype=torch.float32)
    errors, regions = [], []
    for view, cam in zip(scene.split(split), scene.cameras(split)):
        mask = scene.alpha(view)
        if mask is None:
            raise DatasetError(f"{d.path}: view {view.cam_id}/{view.time:.3f} has no mask; regions need a masked capture")
        gt = scene.image(view)
        pred = method.render(cam, float(view.time), bg).rgb[0]
        region = torch.where((gt - bg).abs().amax(-1) <= 0.06, 2, 1)
        errors.append((pred - gt).square())
        regions.append(torch.where(mask > 0.5, 0, region))
    return errors, regions


def region_psnr(reference: Path, runs: list[Path], split: str | None = None) -> list[dict]:
    ref_err, ref_reg = squared_errors(reference, split)
    out = []
    for run in [reference, *runs]:
        err, reg = (ref_err, ref_reg) if run == reference else squared_errors(run, split)
        row = {"run": str(run)}
        for k, name in enumerate(REGIONS):
            se = sum(float(e[r == k].sum()) for e, r in zip(err, reg))
            n = sum(int((r == k).sum()) * 3 for r in reg)
            row[f"psnr_{name}"] = -10 * math.log10(se / n) if n else None
            row[f"pixels_{name}"] = n // 3
            swapped = sum(float(torch.where((r == k)[..., None], er, e).sum()) for e, er, r in zip(err, ref_err, reg))
            row[f"psnr_with_reference_{name}"] = -10 * math.log10(swapped / sum(e.numel() for e in err))
        row["psnr"] = -10 * math.log10(sum(float(e.sum()) for e in err) / sum(e.numel() for e in err))
        out.append(row)
        print(row, flush=True)
    return out


def _fit_with_hook(seed: int, until: int, settings: dict, hook) -> None:
    """Fit adcgs on D-NeRF collision 200x200 (3000-iteration schedule), calling hook(method, step, refined)
    after every step, and stop after iteration `until`."""
    from splat4d.methods.adcgs.method import ADCGS
    from splat4d.train.run import DataConfig, fit
    from splat4d.train.trainer import TrainConfig

    original = ADCGS.after_step

    def after_step(self, opt, step):
        before = tuple(None if x is None else x.clone() for x in (self.refiner.max_opacity, self.refiner.weight))
        out = original(self, opt, step)
        hook(self, step, out, before)
        if step >= until:
            raise StopIteration
        return out

    ADCGS.after_step = after_step
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit("adcgs", ADCGS.Config(**settings), DataConfig(str(SHARED / "dnerf-scene3-collision"), 0.25),
                TrainConfig(iters=3000, save_every=0, seed=seed), Path(tmp) / "run", progress=False)
    except StopIteration:
        pass
    finally:
        ADCGS.after_step = original


def prune_trace(seed: int, until: int, settings: dict) -> list[dict]:
    events = []

    def hook(method, step, out, before):
        opacity, weight = before
        if out and opacity is not None:
            A = opacity.numel() // method.cfg.k
            largest = opacity.reshape(A, -1).amax(1)
            seen = weight.reshape(A, -1).sum(1) > 0
            q = torch.quantile(largest[seen], torch.tensor([0.1, 0.5, 0.9])).tolist() if seen.any() else None
            events.append({"step": step, **out, "anchors_before": A, "anchors_after": len(method.field),
                           "seen": int(seen.sum()), "largest_opacity_q10_q50_q90": q})
            print(events[-1], flush=True)

    _fit_with_hook(seed, until, settings, hook)
    return events


def opacity_trace(seed: int, until: int, settings: dict, every: int = 25) -> list[dict]:
    """Every `every` iterations: quantiles (10/50/90 %) of the canonical opacity O_k of eq. 1 (the network
    theta, before the fine stage and the temporal opacity), the fraction of primitives at or above the draw
    threshold, and the fraction visible at t = 0.5 after the fine stage and the temporal opacity."""
    from splat4d.methods.adcgs.anchors import DRAW_MIN

    rows = []
    quant = lambda x: [round(v, 5) for v in torch.quantile(x.float().flatten(), torch.tensor([0.1, 0.5, 0.9])).tolist()]  # noqa: E731

    def hook(method, step, out, before):
        if step % every:
            return
        with torch.no_grad():
            f = method.field
            canon = f.canonical()["opacity"]
            d = f.deform(0.5, method.dynamic)
            final = (canon * d["opac_scale_k"]).clamp_max(1.0)
            factor = f.temporal_factor(0.5)
            if factor is not None:
                final = final * factor[:, None]
        rows.append({"step": step, "anchors": len(f), "canonical_q10_q50_q90": quant(canon),
                     "drawable_fraction": round(float((canon >= DRAW_MIN).float().mean()), 4),
                     "visible_fraction_t05": round(float((final >= 1 / 255).float().mean()), 4)})
        print(rows[-1], flush=True)

    _fit_with_hook(seed, until, settings, hook)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rows")
    r.add_argument("run", type=Path)
    q = sub.add_parser("prune")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--until", type=int, default=400)
    q.add_argument("--setting", action="append", default=[], help="name=value (a Python literal)")
    o = sub.add_parser("opacity")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--until", type=int, default=300)
    o.add_argument("--setting", action="append", default=[], help="name=value (a Python literal)")
    g = sub.add_parser("regions")
    g.add_argument("reference", type=Path)
    g.add_argument("runs", type=Path, nargs="+")
    g.add_argument("--split", default=None, help="views to score (default: the test split)")
    g.add_argument("--out", type=Path, default=None,
                   help="JSON to write (default: results/adcgs_regions_<reference>[_<split>].json)")
    a = p.parse_args()
    if a.what == "rows":
        result = {"meta": meta(), **untrained_rows(a.run)}
        path = OUT / "adcgs_untrained_rows.json"
    elif a.what == "regions":
        result = {"meta": meta(), "reference": str(a.reference), "split": a.split or "test",
                  "rows": region_psnr(a.reference, a.runs, a.split)}
        path = a.out or OUT / f"adcgs_regions_{a.reference.name}{'_' + a.split if a.split else ''}.json"
    else:
        import ast

        from splat4d.errors import ConfigError
        from splat4d.methods.adcgs.method import ADCGS

        try:
            settings = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.setting)}
            ADCGS.Config(**settings).validate()
        except (ValueError, SyntaxError, TypeError) as e:
            raise ConfigError(f"--setting {' '.join(a.setting)}: {e}") from None
        trace = prune_trace if a.what == "prune" else opacity_trace
        result = {"meta": meta(), "seed": a.seed, "settings": settings, "events": trace(a.seed, a.until, settings)}
        tag = "_".join(f"{k}{v}" for k, v in settings.items()) or "defaults"
        path = OUT / f"adcgs_{a.what}_seed{a.seed}_{tag}.json"
    print(json.dumps(result, indent=1))
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    import sys

    from splat4d.errors import Splat4DError

    try:
        main()
    except Splat4DError as e:  # a missing run, a capture without masks: one line, exit 2
        print(f"adcgs_diagnostics: error: {e}", file=sys.stderr)
        sys.exit(2)
