"""Quality per budget: methods trained with several iteration budgets on several scenes, evaluated on the
held-out views, with PSNR plotted against iterations and against training minutes.

What a new user gets: every method runs with its DEFAULT settings (`get_method(name).Config()`, no
per-scene tuning) on the format's default background (`--background auto`: white for D-NeRF). Each
budget is a separate fit from scratch, since learning-rate, densification and stage schedules are
fractions of the total. Scenes (`SCENES`):

- "dnerf-scene3-collision": ../shared/data/dnerf-scene3-collision at scale 0.25 (200x200, monocular);
- "synthetic:fast": the fast-motion monocular preset (128x128, 150 frames; built in);
- "mujoco-toss-12cam": ../shared/data/mujoco-toss-12cam (EasyVolcap layout, 256x256, 12 cams x 24 frames).

Any other "synthetic:NAME" or dataset path can be given too, with "@SCALE" appended for a scale other
than 1 ("path/to/capture@0.5"). Scenes whose folder is missing are skipped with the reason.

Results are merged into `<out>/budget.json` after every fit: rows of other (scene, method, budget)
combinations are kept, so a benchmark can be run in parts, and `--resume` skips the combinations the
JSON already holds (an interrupted benchmark continues where it stopped). Every invocation appends a
session record (machine, threads, device, load average, `--note` about what else was running); each row
names its session. The chart (`docs/images/budget.png` by default) is redrawn from all rows of the JSON.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import torch

from splat4d.bench.chart import Line, Panel, save_figure
from splat4d.methods.base import available_methods, get_method
from splat4d.train.run import DataConfig, fit
from splat4d.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
"""Where the shared data sets live (beside the checkout); `--shared` points elsewhere."""


@dataclass(frozen=True)
class BudgetScene:
    """A scene of the benchmark: dataset spec ("synthetic:NAME" or a folder; `shared`: relative to the
    shared data folder) and its resolution scale."""

    spec: str
    scale: float = 1.0
    shared: bool = False


SCENES: dict[str, BudgetScene] = {
    "dnerf-scene3-collision": BudgetScene("dnerf-scene3-collision", 0.25, shared=True),
    "synthetic:fast": BudgetScene("synthetic:fast", 1.0),
    "mujoco-toss-12cam": BudgetScene("mujoco-toss-12cam", 1.0, shared=True),
}


@dataclass
class BudgetBench:
    """Quality per iteration budget and per training minute, default settings (table, JSON, PNG chart)."""

    scenes: tuple[str, ...] = tuple(SCENES)
    """Scenes: keys of SCENES, synthetic:NAME, or dataset paths (PATH@SCALE for a scale other than 1)."""
    methods: tuple[str, ...] = ("static", "deformable")
    """Methods, each with its default config."""
    budgets: tuple[int, ...] = (1000, 3000, 6000)
    """Iteration budgets; each is a separate fit from scratch."""
    out: Path = Path("benchmarks/results")
    """budget.json goes here; run folders under out/budget/."""
    chart: Path = Path("docs/images/budget.png")
    """The PNG of the curves (redrawn from all rows of budget.json)."""
    resume: bool = False
    """Skip (scene, method, budget) combinations budget.json already holds."""
    note: str = ""
    """Free text stored with this session, e.g. what else ran on the machine."""
    shared: Path = SHARED
    """Folder holding the shared data sets (dnerf-scene3-collision, mujoco-toss-12cam)."""
    device: str = "auto"
    """Training device: auto (cuda when available), cpu, cuda or cuda:N."""
    keep_runs: bool = False
    """Keep the run folders (checkpoints, eval PNGs) under out/budget/ instead of deleting each after use."""

    def validate(self) -> None:
        from splat4d import config_checks as cc
        from splat4d.errors import ConfigError

        if not self.scenes or not self.methods or not self.budgets:
            raise ConfigError("--scenes, --methods and --budgets each need at least one value")
        for m in self.methods:
            cc.check_choice("--methods", m, available_methods())
        for b in self.budgets:
            cc.check_int("--budgets", b, 1)
        for s in self.scenes:
            scene_setting(s, self.shared)
        cc.check_device("--device", self.device)


def scene_setting(key: str, shared: Path = SHARED) -> tuple[str, float]:
    """(dataset path or synthetic spec, scale) of a --scenes entry."""
    from splat4d.config_checks import check_float

    if key in SCENES:
        s = SCENES[key]
        return (str(Path(shared) / s.spec) if s.shared else s.spec), s.scale
    spec, _, scale = key.rpartition("@") if "@" in key else (key, "", "1")
    try:
        value = float(scale)
    except ValueError:
        value = float("nan")
    check_float(f"--scenes {key!r} scale", value, 0, lo_open=True)
    return spec, value


def missing(key: str, shared: Path = SHARED) -> str | None:
    """Why the scene cannot run (its folder is absent), or None."""
    spec, _ = scene_setting(key, shared)
    if spec.startswith("synthetic") or Path(spec).exists():
        return None
    where = "the shared data folder beside the checkout; --shared to point elsewhere" if key in SCENES else "path"
    return f"{spec} not found ({where})"


def session_record(cfg: BudgetBench) -> dict:
    """Where and how this invocation ran: machine, threads, device, load average, note."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, {os.cpu_count()} cores, "
                   f"{'GPU ' + gpu if gpu else 'no GPU'}",
        "python": platform.python_version(), "torch": torch.__version__,
        "device": cfg.device, "torch_threads": TrainConfig().torch_threads, "numba_threads": numba.get_num_threads(),
        "note": cfg.note,
        "load_avg_1min_at_start": round(os.getloadavg()[0], 2),  # > ~0.5 on an idle machine: something else ran
    }


def load_results(path: Path) -> dict:
    """budget.json as {"meta": {"sessions": [...]}, "skipped": {...}, "rows": [...]} (empty when absent)."""
    if Path(path).is_file():
        data = json.loads(Path(path).read_text())
        data.setdefault("meta", {}).setdefault("sessions", [])
        data.setdefault("rows", [])
        data.setdefault("skipped", {})
        return data
    return {"meta": {"benchmark": "budget", "sessions": []}, "skipped": {}, "rows": []}


def _write(path: Path, data: dict) -> None:
    from splat4d.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def _key(row: dict) -> tuple:
    return row["scene"], row["method"], int(row["budget"])


def run(cfg: BudgetBench, progress: bool = True) -> dict:
    """Fit every (scene, method, budget), merging rows into `<out>/budget.json` after each; print the
    table and draw the chart. Returns the JSON's content."""
    cfg.validate()
    path = Path(cfg.out) / "budget.json"
    data = load_results(path)
    session = session_record(cfg)
    data["meta"]["sessions"].append(session)
    sid = len(data["meta"]["sessions"]) - 1
    done = {_key(r) for r in data["rows"]}
    interrupted = False
    for scene in cfg.scenes:
        why = missing(scene, cfg.shared)
        if why:
            data["skipped"][scene] = why
            print(f"skip {scene}: {why}", flush=True)
            continue
        data["skipped"].pop(scene, None)
        spec, scale = scene_setting(scene, cfg.shared)
        for method in cfg.methods:
            for budget in cfg.budgets:
                if cfg.resume and (scene, method, budget) in done:
                    print(f"keep {scene} {method} {budget} (already in {path})", flush=True)
                    continue
                row = _fit_one(cfg, scene, spec, scale, method, budget, progress)
                if row is None:
                    interrupted = True
                    break
                row["session"] = sid
                data["rows"] = [r for r in data["rows"] if _key(r) != _key(row)] + [row]
                session["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
                _write(path, data)
                print(row_text(row), flush=True)
            if interrupted:
                break
        if interrupted:
            break
    session["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    _write(path, data)
    print_table(data, cfg.scenes)
    print(f"wrote {path}")
    draw_chart(data, cfg.chart)
    print(f"wrote {cfg.chart}")
    return data


def _fit_one(cfg: BudgetBench, scene: str, spec: str, scale: float, method: str, budget: int,
             progress: bool) -> dict | None:
    """One fit from scratch with default settings; its row, or None when training was interrupted."""
    run_dir = Path(cfg.out) / "budget" / f"{scene.replace(':', '_').replace('/', '_')}_{method}_{budget}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    mcfg = get_method(method).Config()
    data = DataConfig(spec, scale)  # background "auto": the format's convention
    t0 = time.perf_counter()
    r = fit(method, mcfg, data, TrainConfig(iters=budget, save_every=0, device=cfg.device), run_dir,
            progress=progress)
    wall = time.perf_counter() - t0
    if "interrupted" in r:
        print(f"{scene} {method} {budget}: interrupted ({r['interrupted']}); rows so far are in the JSON")
        return None
    from splat4d.train.checkpoint import load_config

    background = load_config(run_dir)["data"]["background"]  # what auto resolved to
    if not cfg.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "scene": scene, "method": method, "budget": budget, "path": spec, "scale": scale, "background": background,
        **{k: r.get(k) for k in ("psnr", "ssim", "dssim", "lpips", "fps", "size_mb", "num_gaussians", "iterations",
                                 "train_seconds", "split", "views")},
        "train_minutes": (r.get("train_seconds") or 0.0) / 60.0,
        "wall_minutes": wall / 60.0,  # scene loading, training, final evaluation and render timing
        "grad_threshold": getattr(getattr(mcfg, "densify", None), "grad_threshold", None),  # resolved (auto)
    }


HEADER = (f"{'scene':<24} {'method':<11} {'iters':>6} {'train min':>9} {'wall min':>8} {'PSNR':>6} {'SSIM':>6} "
          f"{'Gaussians':>9} {'MB':>7}")


def row_text(r: dict) -> str:
    return (f"{r['scene']:<24} {r['method']:<11} {r['budget']:>6d} {r['train_minutes']:9.2f} {r['wall_minutes']:8.2f} "
            f"{r['psnr']:6.2f} {r['ssim']:6.3f} {r['num_gaussians']:>9d} {r['size_mb']:7.2f}")


def _ordered_rows(data: dict, scenes: tuple[str, ...] = ()) -> list[dict]:
    order = list(dict.fromkeys([*scenes, *SCENES, *(r["scene"] for r in data["rows"])]))
    methods = list(dict.fromkeys(r["method"] for r in data["rows"]))
    return sorted(data["rows"], key=lambda r: (order.index(r["scene"]), methods.index(r["method"]), r["budget"]))


def print_table(data: dict, scenes: tuple[str, ...] = ()) -> None:
    """All rows of the JSON, grouped by scene and method, and the skipped scenes."""
    print("\n" + HEADER)
    for r in _ordered_rows(data, scenes):
        print(row_text(r))
    for scene, why in data.get("skipped", {}).items():
        print(f"{scene:<24} skipped: {why}")


def draw_chart(data: dict, path: Path) -> Path:
    """Per scene one row of two panels, PSNR against iterations and against training minutes, one line
    per method (points in budget order)."""
    rows = _ordered_rows(data)
    scenes = list(dict.fromkeys(r["scene"] for r in rows))
    panels = []
    for scene in scenes:
        mine = [r for r in rows if r["scene"] == scene]
        methods = list(dict.fromkeys(r["method"] for r in mine))
        by = {m: [r for r in mine if r["method"] == m] for m in methods}
        res = mine[0]
        what = f"{scene} ({res.get('background', '?')} bg, scale {res.get('scale', 1):g})"
        panels.append([
            Panel(f"{what}: PSNR vs iterations", "iterations", "test PSNR (dB)",
                  [Line(m, [r["budget"] for r in by[m]], [r["psnr"] for r in by[m]]) for m in methods]),
            Panel(f"{scene}: PSNR vs training time", "training minutes (wall clock)", "test PSNR (dB)",
                  [Line(m, [r["train_minutes"] for r in by[m]], [r["psnr"] for r in by[m]]) for m in methods]),
        ])
    if not panels:
        panels = [[Panel("quality per budget", "iterations", "test PSNR (dB)", note="no results yet")]]
    sessions = data["meta"].get("sessions", [])
    last = sessions[-1] if sessions else {}
    footer = f"default settings; {last.get('machine', '')}; {last.get('date', '')}"
    if last.get("note"):
        footer += f"; {last['note']}"
    return save_figure(path, panels, title="Quality per budget (default settings, one fit per budget)",
                       footer=footer, panel_size=(460, 300))
