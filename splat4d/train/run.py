"""Run-level entry points behind `splat4d fit / eval / render`: build a method on a scene, train it into a
run folder, and load a run back."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
import tyro

from splat4d.config_checks import check_background, check_choice, check_device, check_float, check_ints, check_output_dir, check_str
from splat4d.data import READERS, is_auto, load_scene, resolve_background
from splat4d.data.scene import select_cameras
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
    background: str = "auto"
    """Background colour: auto (the format's convention: white for D-NeRF, black otherwise), white, black,
    gray, #RRGGBB or R,G,B. A run's config.yaml records the colour auto resolved to."""
    format: Optional[str] = None
    """Force a reader (dnerf, neu3d, hypernerf, easyvolcap) instead of detecting the format."""
    train_cameras: tuple[int, ...] = ()
    """Train on these cameras only (their views from every split); every other camera is the test split.
    Empty: the dataset's own splits."""

    def validate(self, prefix: str = "data") -> None:
        """Raise ConfigError naming the first setting out of range (see splat4d.config_checks)."""
        check_str(f"{prefix}.path", self.path)
        check_float(f"{prefix}.scale", self.scale, 0, lo_open=True)
        check_background(f"{prefix}.background", self.background)
        check_choice(f"{prefix}.format", self.format, (*READERS, "synthetic"), optional=True)
        if self.train_cameras != ():
            check_ints(f"{prefix}.train_cameras", self.train_cameras, 0)


def pick_device(name: str) -> torch.device:
    """auto, cpu, cuda or cuda:N -> a torch device; CUDA that is not there raises ConfigError."""
    check_device("device", name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but no CUDA device is available")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def validate_fit(method_cfg, data: DataConfig, train: TrainConfig, out: Path) -> None:
    """Everything `fit` is given, checked before anything is read or written (ConfigError otherwise)."""
    data.validate("data")
    train.validate("train")
    method_cfg.validate("method")
    if distributed.env_rank() == 0:  # only rank 0 writes; ranks probing one folder at once would race
        check_output_dir("--out", out)


def fit(method_name: str, method_cfg, data: DataConfig, train: TrainConfig, out: Path, resume: bool = False,
        progress: bool = True, view_order=None) -> dict:
    """Train `method_name` on `data` into run folder `out`; writes config.yaml, checkpoint.pt,
    metrics.json and eval/ PNGs. Returns the final metrics. Bad settings raise ConfigError before anything
    is read or written (`validate_fit`).

    Launched by torchrun with several ranks, it trains data-parallel (see `splat4d.train.distributed`);
    rank 0 writes every file and evaluates, the others return {"iterations": N, "rank": r}.
    `view_order` is the Trainer's (which training views each epoch visits; None: all, uniformly)."""
    cls = get_method(method_name)
    if not isinstance(method_cfg, cls.Config):
        raise ConfigError(f"method {method_name!r} takes a {cls.Config.__name__}, got {type(method_cfg).__name__}")
    validate_fit(method_cfg, data, train, out)
    out = Path(out)
    pick_device(train.device)
    if resume:
        saved = load_config(out)
        if saved["method"] != method_name:
            raise ConfigError(f"{out} holds a run of method {saved['method']!r}, not {method_name!r}")
    elif (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    data = resolved_data(data)  # config.yaml records the colour used, so --config repeats the run exactly
    torch.manual_seed(train.seed)
    scene = load_scene(data.path, scale=data.scale, background=data.background, format=data.format)
    scene = cls.prepare_scene(select_cameras(scene, data.train_cameras), method_cfg)
    device = distributed.init(pick_device(train.device))
    gen = torch.Generator().manual_seed(train.seed)
    method = cls.from_scene(scene, method_cfg, generator=gen)
    config = {"method": method_name, "data": data, "train": train, "method_config": method_cfg}
    trainer = Trainer(method, scene, train, out, config, device, view_order=view_order)
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


def resolved_data(data: DataConfig) -> DataConfig:
    """`data` with background "auto" replaced by the colour the dataset's format calls for (a copy;
    `data` itself is left as it was). Other values come back unchanged."""
    if not is_auto(data.background):
        return data
    return dataclasses.replace(data, background=resolve_background(data.background, data.path, data.format)[0])


def write_metrics(out: Path, result: dict) -> Path:
    from splat4d.train.checkpoint import atomic_write_bytes

    path = Path(out) / "metrics.json"
    split = result.get("split", "test")
    atomic_write_bytes(path, json.dumps({split: result}, indent=2).encode())
    return path


def load_run(run_dir: Path, device: str = "auto"):
    """(method in eval mode, config dict, checkpoint step) of a run folder, or of a .s4d bitstream."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        from splat4d.codec.container import is_bitstream

        if not is_bitstream(run_dir):
            raise CheckpointError(f"{run_dir} is neither a run folder nor a splat4d bitstream (.s4d)")
        from splat4d.methods.adcgs.bitstream import decode

        method, config, step = decode(run_dir.read_bytes(), str(run_dir))
        return method.to(pick_device(device)), config, step
    config = load_config(run_dir)
    name = config["method"]
    cls = get_method(name)
    ckpt = load_checkpoint(run_dir, name)
    cfg = _from_run_config(run_dir, cls.Config, config, "method_config")
    try:
        method = cls.empty(cfg, ckpt["model"])
        method.load_state_dict(ckpt["model"])
        method.load_extra_state(ckpt.get("extra", {}))
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(f"checkpoint in {run_dir} does not fit method {name!r}: {str(e).splitlines()[0]}") from None
    method.eval()
    return method.to(pick_device(device)), config, int(ckpt["step"])


def run_data_config(config: dict, run_dir: Path | None = None) -> DataConfig:
    return _from_run_config(run_dir, DataConfig, config, "data")


def _from_run_config(run_dir: Path | None, cls, config: dict, key: str):
    """config[key] as a validated `cls`; errors name the run's config.yaml."""
    try:
        return from_plain(cls, config.get(key, {}), key)
    except ConfigError as e:
        where = f"{Path(run_dir) / 'config.yaml'}: " if run_dir is not None else ""
        raise ConfigError(f"{where}{e}") from None
