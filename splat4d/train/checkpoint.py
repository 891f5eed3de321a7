"""Run folders: resolved config (config.yaml) and checkpoint.pt, written atomically, read with clear errors."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from splat4d.errors import CheckpointError, ConfigError

FORMAT = "splat4d-checkpoint"
VERSION = 1


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and Paths -> YAML-safe dicts, lists and strings."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_plain(cls, data: dict):
    """Build dataclass `cls` from a plain dict (nested dataclasses and tuples restored); unknown keys fail."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        cur = getattr(defaults, name)
        if dataclasses.is_dataclass(cur):
            value = from_plain(type(cur), value)
        elif isinstance(cur, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(cur, Path) and value is not None:
            value = Path(value)
        kwargs[name] = value
    return cls(**kwargs)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_config(run_dir: Path, config: dict) -> Path:
    path = Path(run_dir) / "config.yaml"
    atomic_write_bytes(path, yaml.safe_dump(to_plain(config), sort_keys=False).encode())
    return path


def load_config(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"no config file {path} (a run folder holds config.yaml and checkpoint.pt)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or "method" not in data:
        raise ConfigError(f"{path} is not a splat4d run config (no 'method' key)")
    return data


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    path = Path(run_dir) / "checkpoint.pt"
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(run_dir: Path, method: str | None = None) -> dict:
    """Read RUN/checkpoint.pt (or a .pt path). Corrupt files and other methods' checkpoints raise CheckpointError."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected RUN/checkpoint.pt written by 'splat4d fit')")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a splat4d checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt.get('version')}, this splat4d reads {VERSION}")
    if method is not None and ckpt.get("method") != method:
        raise CheckpointError(f"{path} is a checkpoint of method {ckpt.get('method')!r}, not {method!r}")
    return ckpt


def state_size_mb(state: dict) -> float:
    """Size of a model state dict serialised with torch.save, in MB (`splat4d.metrics.BYTES_PER_MB`)."""
    from splat4d.metrics import BYTES_PER_MB

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell() / BYTES_PER_MB
