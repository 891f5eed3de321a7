"""`splat4d compare`: several methods on one capture, scored on the same held-out views.

Each method in `methods` is fitted into OUT/runs/NAME with its default settings (a finished fit of the same
data and iterations there is reused); each path in `runs` (a run folder, a .s4d bitstream or a baked 4K4D
folder) is evaluated as it is. Every model is rendered on the same device and scored with the same metrics.
Writes OUT/table.md, OUT/table.json, OUT/grid.png (ground truth and each method on the same test views)
and OUT/rd.png (PSNR against size, one point per model).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from splat4d.errors import ConfigError
from splat4d.io.atomic import atomic_path

COLUMNS = ("psnr", "ssim", "dssim", "lpips", "fps", "size_mb", "train_seconds", "num_gaussians")
GRID_VIEWS = 4


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def fit_or_reuse(name: str, data, iters: int, run_dir: Path) -> Path:
    """OUT/runs/NAME fitted with `name`'s defaults, unless it already holds a fit of this data and length."""
    from splat4d.methods.base import get_method
    from splat4d.train.checkpoint import load_config
    from splat4d.train.run import fit, resolved_data
    from splat4d.train.trainer import TrainConfig

    if (run_dir / "metrics.json").exists():
        saved = load_config(run_dir)
        want = resolved_data(data)
        same = (saved.get("method") == name and saved["data"]["path"] == str(want.path)
                and float(saved["data"]["scale"]) == float(want.scale) and int(saved["train"]["iters"]) == iters)
        if same:
            print(f"  reusing {run_dir}")
            return run_dir
        raise ConfigError(f"{run_dir} holds another fit (method, data or --iters differ); remove it or choose "
                          f"another --out")
    resume = (run_dir / "checkpoint.pt").exists()  # an interrupted fit (no metrics.json yet) continues
    fit(name, get_method(name).Config(), data, TrainConfig(iters=iters, save_every=500), run_dir, resume=resume,
        progress=True)
    return run_dir


def score(run: Path, scene, lpips_weights=None) -> tuple[dict, list[torch.Tensor]]:
    """(table row, renders of the first GRID_VIEWS test views) of one model on `scene`."""
    from splat4d.metrics import file_size_mb
    from splat4d.train.evaluate import eval_split, evaluate
    from splat4d.train.run import load_run

    method, config, step = load_run(run)
    renders = dict.fromkeys(grid_views(scene, eval_split(scene)))
    result = evaluate(method, scene, lpips_weights=lpips_weights, keep=renders)
    if run.is_file():  # a bitstream: its size is the file's
        result["size_mb"] = file_size_mb(run)
    own = run / "metrics.json" if run.is_dir() else None
    train_s = None
    if own is not None and own.exists():
        train_s = json.loads(own.read_text()).get("test", {}).get("train_seconds")
    row = {"label": label_of(run, config), "method": config["method"], "run": str(run), "iterations": step,
           "device": device_name(method.device), "train_seconds": train_s,
           **{k: result.get(k) for k in COLUMNS if k != "train_seconds"}}
    if result.get("lpips") is None:
        row["lpips"] = result.get("lpips_note", "unavailable")
    return row, list(renders.values())


def label_of(run: Path, config: dict) -> str:
    return config["method"] if run.parent.name == "runs" else f"{config['method']} ({run.name})"


def grid_views(scene, split: str) -> list[int]:
    """Up to GRID_VIEWS test views spread evenly over the split."""
    n = len(scene.split(split))
    k = min(GRID_VIEWS, n)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def compare(data, methods: list[str], runs: list[Path], iters: int, out: Path, lpips_weights=None) -> list[dict]:
    """Fit `methods`, take `runs` as they are, score all on `data`'s held-out views; write the four files."""
    from splat4d.data import load_scene
    from splat4d.train.evaluate import eval_split
    from splat4d.train.run import resolved_data

    if not methods and not runs:
        raise ConfigError("nothing to compare: give --methods and/or --runs")
    out = Path(out)
    d = resolved_data(data)
    scene = load_scene(d.path, scale=d.scale, background=d.background, format=d.format)
    models = []
    for i, name in enumerate(methods):
        print(f"[{i + 1}/{len(methods)}] {name}")
        models.append(fit_or_reuse(name, data, iters, out / "runs" / name))
    models += [Path(r) for r in runs]
    rows, renders = [], []
    for i, run in enumerate(models):
        print(f"scoring {run} ({i + 1}/{len(models)})")
        row, imgs = score(run, scene, lpips_weights)
        rows.append(row)
        renders.append(imgs)
    split = eval_split(scene)
    truth = [scene.image(scene.split(split)[i]) for i in grid_views(scene, split)]
    write_outputs(out, rows, truth, renders, {"data": str(d.path), "scale": d.scale, "split": split,
                                               "views": len(scene.split(split)), "iterations": iters})
    return rows


def write_outputs(out: Path, rows: list[dict], truth: list, renders: list[list], meta: dict) -> None:
    from splat4d.plots import labelled_grid, scatter_plot

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "table.json") as tmp:
        tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(markdown_table(rows, meta))
    columns = [("ground truth", truth)] + [(r["label"], imgs) for r, imgs in zip(rows, renders)]
    labelled_grid(out / "grid.png", columns)
    points = [(r["size_mb"], r["psnr"], r["label"]) for r in rows]
    scatter_plot(out / "rd.png", points, "model size (MB, log scale)", "PSNR (dB)", log_x=True)
    print(markdown_table(rows, meta))
    print(f"wrote {out / 'table.md'}, table.json, grid.png and rd.png")


def _cell(v, digits: int) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return "unavailable" if v.startswith("unavailable") else v
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def markdown_table(rows: list[dict], meta: dict) -> str:
    head = ("| method | PSNR | SSIM | D-SSIM | LPIPS | FPS | size MB | train s | primitives |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['label']} | {_cell(r['psnr'], 2)} | {_cell(r['ssim'], 4)} | {_cell(r['dssim'], 4)} | "
        f"{_cell(r['lpips'], 4)} | {_cell(r['fps'], 1)} | {_cell(r['size_mb'], 3)} | "
        f"{_cell(r['train_seconds'], 0)} | {_cell(r['num_gaussians'], 0)} |\n" for r in rows)
    devices = sorted({r["device"] for r in rows})
    notes = [f"{meta['data']} at scale {meta['scale']}, {meta['split']} split ({meta['views']} views); "
             f"FPS on {', '.join(devices)}."]
    notes += [f"LPIPS {r['label']}: {r['lpips']}" for r in rows if isinstance(r["lpips"], str)][:1]
    return head + body + "\n" + "\n".join(notes) + "\n"
