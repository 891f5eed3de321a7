"""DS4D benchmark: `ds4d` (Table 2's rows A-H) against `deformable` trained on the same views and iterations.

One camera is the input video, three others the pseudo views (exact renders here, not generated ones),
every other camera is held out. Reported per row on the held-out cameras: PSNR, SSIM and PSNR inside the
moving object's mask (synthetic "deforming": pixels where the ellipsoid is the visible surface, from the
ray caster's object ids; toss: the capture's masks, every object but the floor). Rows are merged into
`ds4d_<scene>.json` after every fit; run folders go under out/ds4d/<scene>_<row>/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from splat4d.bench.adcgs import SHARED, _fit, _meta
from splat4d.data import load_scene
from splat4d.data.scene import select_cameras
from splat4d.errors import ConfigError
from splat4d.metrics import psnr, ssim
from splat4d.methods.ds4d.method import TABLE2, DS4DConfig
from splat4d.methods.deformable import DeformableConfig
from splat4d.train.run import DataConfig, load_run

SCENES = {
    "synthetic:deforming": ("synthetic:deforming", 1.0, 0, (3, 6, 9)),
    "toss": (str(SHARED / "mujoco-toss-12cam"), 0.5, 0, (4, 8)),
}
"""scene -> (path, scale, input camera, pseudo cameras). The toss capture at 128x128, as the other benchmarks."""


@dataclass
class DS4DBench:
    """ds4d's Table 2 rows vs deformable on one multi-view scene (table + JSON)."""

    scene: str = "synthetic:deforming"
    """synthetic:deforming or toss."""
    iters: int = 2000
    """Iterations of every fit."""
    rows: tuple[str, ...] = ("deformable", "A", "B", "C", "D", "E", "F", "G", "H")
    """Which rows to run: deformable and any of Table 2's A-H; a row may carry overrides of ds4d settings,
    e.g. "H+pseudo_weight=1.0+densify.grow_fraction=0" (a variant, listed after the table's rows)."""
    features: str = "patch"
    """Frame features of rows D-H: patch (weights-free) or dinov2 (needs its weights)."""
    out: Path = Path("benchmarks/results")
    """ds4d_<scene>.json goes here; run folders under out/ds4d/."""
    resume: bool = True
    """Reuse run folders that already hold a finished fit."""

    def validate(self) -> None:
        from splat4d import config_checks as cc

        cc.check_choice("--scene", self.scene, tuple(SCENES))
        cc.check_int("--iters", self.iters, 1)
        bad = [r for r in self.rows if r != "deformable" and r.split("+")[0] not in TABLE2]
        if bad or not self.rows:
            raise ConfigError(f"--rows must name deformable or Table 2 rows {', '.join(TABLE2)}, got {bad or 'none'}")
        for r in self.rows:
            row_config(r, self.features)[1].validate(f"--rows {r}: method")
        cc.check_choice("--features", self.features, ("patch", "dinov2"))
        cc.check_output_dir("--out", self.out)


def object_masks(scene_name: str, scene, views) -> list[torch.Tensor]:
    """Per view [H, W] bool: where the moving object is the visible surface."""
    if scene_name.startswith("synthetic:"):
        from splat4d.data.synthetic import OBJECT_IDS, SyntheticWorld, synthetic_config

        world = SyntheticWorld(synthetic_config(scene_name.split(":", 1)[1]))
        return [world.render(scene.camera(v), float(v.time))["object_id"][0] == OBJECT_IDS["ellipsoid"] for v in views]
    return [scene.alpha(v) > 0.5 for v in views]


@torch.no_grad()
def held_out(method, scene, masks) -> dict:
    """PSNR and SSIM over the held-out views; PSNR inside the object masks (views where it shows)."""
    bg = torch.tensor(scene.background, dtype=torch.float32)
    views = scene.split("test")
    p, s, pm, n_masked = 0.0, 0.0, 0.0, 0
    for v, m in zip(views, masks):
        pred = method.render(scene.camera(v), float(v.time), bg).rgb[0].clamp(0, 1)
        gt = scene.image(v)
        p += float(psnr(pred, gt))
        s += float(ssim(pred, gt))
        if int(m.sum()) >= 16:
            pm += float(psnr(pred, gt, mask=m.float()))
            n_masked += 1
    return {"psnr": p / len(views), "ssim": s / len(views), "masked_psnr": pm / max(n_masked, 1),
            "masked_views": n_masked, "views": len(views)}


def row_config(row: str, features: str) -> tuple[str, object]:
    """(method, config) of a row ("H" or "H+key=value+..."); the cameras are set per scene by `run`."""
    if row == "deformable":
        return "deformable", DeformableConfig()
    letter, *overrides = row.split("+")
    cfg = replace(DS4DConfig(features=features), **TABLE2[letter])
    for item in overrides:
        key, sep, text = item.partition("=")
        *path, name = key.split(".")
        owner = cfg
        for part in path:
            owner = getattr(owner, part, None)
        if not sep or owner is None or not hasattr(owner, name):
            raise ConfigError(f"--rows {row}: {item!r} is not KEY=VALUE of a ds4d setting")
        old = getattr(owner, name)
        try:
            value = (text.lower() in ("1", "true", "yes")) if isinstance(old, bool) else type(old)(text)
        except ValueError:
            raise ConfigError(f"--rows {row}: {key} takes a {type(old).__name__}, got {text!r}") from None
        setattr(owner, name, value)
    return "ds4d", cfg


def run(cfg: DS4DBench) -> dict:
    path, scale, inp, pseudo = SCENES[cfg.scene]
    key = cfg.scene.replace(":", "_")
    result_path = cfg.out / f"ds4d_{key}.json"
    old = json.loads(result_path.read_text()) if result_path.is_file() else {}
    rows = {r["row"]: r for r in old.get("rows", []) if old.get("meta", {}).get("iters") == cfg.iters}
    scene = masks = None
    for row in cfg.rows:
        name, mcfg = row_config(row, cfg.features)
        if name == "ds4d":
            mcfg = replace(mcfg, input_camera=inp, pseudo_cameras=pseudo)
            data = DataConfig(path, scale)
        else:
            data = DataConfig(path, scale, train_cameras=(inp, *pseudo))
        run_dir = cfg.out / "ds4d" / f"{key}_{row.replace('+', '_').replace('=', '-')}"
        _fit(name, mcfg, data, cfg.iters, run_dir, cfg.resume)
        method, config, _ = load_run(run_dir, "cpu")
        if scene is None:
            scene = select_cameras(load_scene(path, scale=scale, background=config["data"]["background"]), (inp, *pseudo))
            masks = object_masks(cfg.scene, scene, scene.split("test"))
        r = {"row": row, "method": name, **held_out(method, scene, masks), "gaussians": method.num_primitives,
             **method.describe()}
        train = json.loads((run_dir / "metrics.json").read_text())["test"].get("train_seconds")
        r["train_seconds"] = train
        rows[row] = r
        result = {"meta": {**_meta(cfg), "input_camera": inp, "pseudo_cameras": list(pseudo), "scale": scale},
                  "rows": [rows[k] for k in ("deformable", *TABLE2) if k in rows]
                  + [r for k, r in rows.items() if "+" in k]}
        cfg.out.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result, indent=2))
    base = rows.get("deformable")
    print(f"\n{cfg.scene}, {cfg.iters} iterations, input camera {inp}, pseudo {list(pseudo)}, features {cfg.features}")
    width = max(10, *(len(r["row"]) for r in result["rows"]))
    print(f"{'row':<{width}} {'PSNR':>6} {'SSIM':>6} {'mask PSNR':>9} {'d mask':>7} {'Gaussians':>9}")
    for r in result["rows"]:
        d = f"{r['masked_psnr'] - base['masked_psnr']:+7.2f}" if base else "      -"
        print(f"{r['row']:<{width}} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['masked_psnr']:9.2f} {d} {r['gaussians']:9d}")
    return result
