"""Run-level entry points behind `splat4d fit / eval / render`: build a method on a scene, train it into a
run folder, and load a run back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
import tyro

from splat4d.data import load_scene
from splat4d.errors import CheckpointError, ConfigError
from splat4d.methods.base import get_method
from splat4d.train.checkpoint import from_plain, load_checkpoint, load_config
from splat4d.train import distributed
from splat4d.train.evaluate import evaluate
from splat4d.train.trainer import TrainConfig, Trainer


@dataclass
class DataConfig:
    """Which dataset to read and how."""

    path: Annotated[str, tyro.conf.arg(name="data")] = "synthetic:default"
    """Dataset folder, or synthetic / synthetic:NAME for a built-in scene."""
    scale: float = 1.0
    """Resolution scale of images and cameras (e.g. 0.25)."""
    background: str = "black"
    """Background colour: white, black or R,G,B."""
    format: Optional[str] = None
    """Force a reader (dnerf, neu3d, hypernerf, easyvolcap) instead of detecting the format."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def fit(method_name: str, method_cfg, data: DataConfig, train: TrainConfig, out: Path, resume: bool = False,
        progress: bool = True) -> dict:
    """Train `method_name` on `data` into run folder `out`; writes config.yaml, checkpoint.pt,
    metrics.json and eval/ PNGs. Returns the final metrics.

    Launched by torchrun with several ranks, it trains data-parallel (see `splat4d.train.distributed`);
    rank 0 writes every file and evaluates, the others return {"iterations": N, "rank": r}."""
    cls = get_method(method_name)
    out = Path(out)
    if resume:
        saved = load_config(out)
        if saved["method"] != method_name:
            raise ConfigError(f"{out} holds a run of method {saved['method']!r}, not {method_name!r}")
    elif (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    torch.manual_seed(train.seed)
    scene = load_scene(data.path, scale=data.scale, background=data.background, format=data.format)
    device = distributed.init(pick_device(train.device))
    gen = torch.Generator().manual_seed(train.seed)
    method = cls.from_scene(scene, method_cfg, generator=gen)
    config = {"method": method_name, "data": data, "train": train, "method_config": method_cfg}
    trainer = Trainer(method, scene, train, out, config, device)
    if resume:
        trainer.resume()
    result = trainer.fit(evaluate=lambda m: evaluate(m, scene), progress=progress)
    if not distributed.is_main():
        return {**result, "rank": distributed.rank()}
    if "interrupted" not in result:
        final = evaluate(trainer.method, scene, out_dir=out / "eval")
        final.update(iterations=trainer.step, train_seconds=result.get("train_seconds"))
        write_metrics(out, final)
        trainer._log(out / "train_log.jsonl", {"step": trainer.step, **final})
        result = final
    return result


def write_metrics(out: Path, result: dict) -> Path:
    from splat4d.train.checkpoint import atomic_write_bytes

    path = Path(out) / "metrics.json"
    split = result.get("split", "test")
    atomic_write_bytes(path, json.dumps({split: result}, indent=2).encode())
    return path


def load_run(run_dir: Path, device: str = "auto"):
    """(method in eval mode, config dict, checkpoint step) of a run folder."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    name = config["method"]
    cls = get_method(name)
    ckpt = load_checkpoint(run_dir, name)
    cfg = from_plain(cls.Config, config.get("method_config", {}))
    try:
        method = cls.empty(cfg, ckpt["model"])
        method.load_state_dict(ckpt["model"])
        method.load_extra_state(ckpt.get("extra", {}))
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint in {run_dir} does not fit method {name!r}: {str(e).splitlines()[0]}") from None
    method.eval()
    return method.to(pick_device(device)), config, int(ckpt["step"])


def run_data_config(config: dict) -> DataConfig:
    return from_plain(DataConfig, config.get("data", {}))
