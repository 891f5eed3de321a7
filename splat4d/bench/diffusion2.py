"""Diffusion² stage-1 benchmark on tiny priors of the real classes: batched composition (all rows in one
video-prior call, all columns in one multi-view call per step) vs rows and columns one by one, the rollback's
extra calls and time, and two gloo ranks vs one process. Every case runs in its own process (peak RSS is per
process); the references are given, so only the matrix is sampled."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from splat4d.config_checks import check_int


@dataclass
class Diffusion2Bench:
    """Stage-1 speed and memory: batched vs one by one, rollback overhead, 2 gloo ranks."""

    views: int = 21
    """V (SV3D's orbit)."""
    frames: int = 25
    """F (SVD-xt)."""
    size: int = 16
    """Image size (latents are half of it with the tiny VAE)."""
    steps: int = 4
    """Euler steps per case."""
    rollback: int = 2
    """Rollback steps (the no-rollback case sets 0)."""
    out: Path = Path("benchmarks/results/diffusion2.json")
    """JSON results."""

    def validate(self) -> None:
        for name in ("views", "frames", "size", "steps"):
            check_int(f"--{name}", getattr(self, name), 1)
        check_int("--rollback", self.rollback, 0, self.steps)


def case(models: str, views: int, frames: int, size: int, steps: int, rollback: int, chunk: int, threads: int) -> dict:
    """One timed sampling in this process (rank 0 reports under torchrun)."""
    import torch

    from splat4d.methods.diffusion2 import sample_image_matrix_distributed
    from splat4d.methods.diffusion2.priors import load_priors
    from splat4d.train import distributed as ddp

    ddp.init(torch.device("cpu"))
    torch.set_num_threads(threads)
    p = load_priors(Path(models) / "video", Path(models) / "multiview")
    shape = p.space.latent_shape(size)
    g = torch.Generator().manual_seed(0)
    refs = dict(ref_views=torch.randn(views, *shape, generator=g), ref_video=torch.randn(frames, *shape, generator=g))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ddp.barrier()
    t0 = time.perf_counter()
    sample_image_matrix_distributed(p.video, p.multiview, views, frames, shape, num_steps=steps, rollback_steps=rollback,
                                    chunk=chunk or None, generator=torch.Generator().manual_seed(1), **refs)
    ddp.barrier()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ddp.shutdown()
    return {"seconds": seconds, "video_calls": p.video.calls, "multiview_calls": p.multiview.calls,
            "peak_rss_mb": peak, "rss_growth_mb": peak - base}


def _run_case(models: Path, cfg: Diffusion2Bench, rollback: int, chunk: int, threads: int, ranks: int) -> dict:
    args = ["-m", "splat4d.bench.diffusion2", "--case", str(models), str(cfg.views), str(cfg.frames), str(cfg.size),
            str(cfg.steps), str(rollback), str(chunk), str(threads)]
    if ranks > 1:
        cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(ranks), *args]
    else:
        cmd = [sys.executable, *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark case failed: {r.stderr[-2000:]}")
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


def run(cfg: Diffusion2Bench) -> dict:
    from splat4d.methods.diffusion2.tiny import write_tiny_priors

    cases = {
        "batched (1 thread)": dict(rollback=cfg.rollback, chunk=0, threads=1, ranks=1),
        "one by one (1 thread)": dict(rollback=cfg.rollback, chunk=1, threads=1, ranks=1),
        "batched, no rollback (1 thread)": dict(rollback=0, chunk=0, threads=1, ranks=1),
        "batched (2 threads)": dict(rollback=cfg.rollback, chunk=0, threads=2, ranks=1),
        "batched, 2 gloo ranks x 1 thread": dict(rollback=cfg.rollback, chunk=0, threads=1, ranks=2),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_priors(Path(tmp))
        for name, c in cases.items():
            results[name] = {**c, **_run_case(Path(tmp), cfg, **c)}
            print(f"  {name}: {results[name]['seconds']:.2f} s", flush=True)
    print(f"\nDiffusion² stage 1, tiny priors, V={cfg.views} F={cfg.frames} at {cfg.size}² ({cfg.steps} steps, "
          f"rollback {cfg.rollback}; CPU, {os.cpu_count()} cores)")
    print(f"{'case':<36} {'s':>7} {'s/call-pair':>11} {'calls (video+mv)':>17} {'peak RSS MB':>12} {'growth MB':>10}")
    for name, r in results.items():
        pairs = r["steps"] = cfg.steps + r["rollback"]
        print(f"{name:<36} {r['seconds']:>7.2f} {r['seconds'] / pairs:>11.2f} "
              f"{r['video_calls']:>8}+{r['multiview_calls']:<8} {r['peak_rss_mb']:>12.0f} {r['rss_growth_mb']:>10.0f}")
    b, o, n = (results[k] for k in ("batched (1 thread)", "one by one (1 thread)", "batched, no rollback (1 thread)"))
    summary = {"batched_speedup_vs_one_by_one": o["seconds"] / b["seconds"],
               "rollback_extra_time": b["seconds"] / n["seconds"] - 1, "rollback_extra_calls_expected": cfg.rollback / cfg.steps,
               "gloo2_speedup_vs_1_process_1_thread": b["seconds"] / results["batched, 2 gloo ranks x 1 thread"]["seconds"],
               "gloo2_speedup_vs_1_process_2_threads": results["batched (2 threads)"]["seconds"]
               / results["batched, 2 gloo ranks x 1 thread"]["seconds"]}
    for k, v in summary.items():
        print(f"  {k}: {v:.2f}")
    record = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()}, "cases": results,
              "summary": summary}
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {cfg.out}")
    return record


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        a = sys.argv[2:]
        out = case(a[0], *(int(v) for v in a[1:]))
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(out))
    else:
        from splat4d.bench import main

        sys.exit(main(Diffusion2Bench, run, "python -m splat4d.bench.diffusion2", sys.argv[1:]))
