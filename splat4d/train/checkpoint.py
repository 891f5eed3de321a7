"""Run folders: resolved config (config.yaml) and checkpoint.pt, written atomically, read with clear errors."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from splat4d.errors import CheckpointError, ConfigError

FORMAT = "splat4d-checkpoint"
VERSION = 2  # 2: the config entry is plain data (to_plain), so weights_only=True reads it


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


def from_plain(cls, data: dict, prefix: str | None = None):
    """Build dataclass `cls` from a plain dict (nested dataclasses and tuples restored) and `validate()` it
    when it has that method (its messages name settings `prefix.field`). Unknown keys, mistyped values and
    values out of range raise ConfigError. Integral floats (1000.0) are taken where an int belongs."""
    where = f" under {prefix!r}" if prefix else ""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of {cls.__name__} settings{where}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(map(str, data)) - set(fields)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s){where}: {', '.join(sorted(unknown))}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        cur = getattr(defaults, name)
        if dataclasses.is_dataclass(cur):
            value = from_plain(type(cur), value, f"{prefix}.{name}" if prefix else None)
        elif isinstance(cur, tuple) and isinstance(value, list):
            value = tuple(_int_if_integral(v) if cur and isinstance(cur[0], int) else v for v in value)
        elif isinstance(cur, Path) and isinstance(value, str):
            value = Path(value)
        elif isinstance(cur, int) and not isinstance(cur, bool):
            value = _int_if_integral(value)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad {cls.__name__} settings{where}: {str(e).splitlines()[0]}") from None
    if hasattr(obj, "validate"):
        obj.validate(*([prefix] if prefix else []))
    return obj


def _int_if_integral(value: Any) -> Any:
    """1000.0 -> 1000 where an int belongs; anything else unchanged (3.5 and YAML's string '1e3' - YAML 1.1
    reads a float only with a dot, 1.0e3 - are left for validate() to refuse)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


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
    if not isinstance(data["method"], str):
        raise ConfigError(f"{path}: method must be a method name, got {data['method']!r}")
    return data


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    path = Path(run_dir) / "checkpoint.pt"
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_run_folder(out: Path, method, config: dict, step: int) -> Path:
    """A run folder (config.yaml + checkpoint.pt without optimizer state) for a model made by a command
    rather than a fit (a decoded bitstream, a baked model). The folder appears whole: written under a
    temporary name beside it, then renamed; an empty `out` is replaced, one holding a run is refused."""
    import shutil
    import tempfile

    out = Path(out)
    if (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; choose another --out")
    payload = {"method": config["method"], "config": config, "step": int(step), "model": method.state_dict(),
               "extra": {}, "optimizer": {"state": {}, "param_groups": []},
               "sampler": torch.Generator().manual_seed(0).get_state(), "order": []}
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tmp-"))
    try:
        save_config(tmp, config)
        save_checkpoint(tmp, payload)
        if out.exists():  # an empty folder given as --out
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_checkpoint(run_dir: Path, method: str | None = None) -> dict:
    """Read RUN/checkpoint.pt (or a .pt path) with `weights_only=True`: tensors and plain data only, so a
    checkpoint from a stranger cannot run code. Corrupt files, pickled objects, other methods' checkpoints
    and missing or mistyped entries raise CheckpointError."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected RUN/checkpoint.pt written by 'splat4d fit')")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))  # weights_only refused to import this global
        if refused is None:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
        old = " (a checkpoint of an older splat4d, version 1: fit it again)" if refused[1].startswith("splat4d.") else ""
        raise CheckpointError(f"checkpoint {path} holds a pickled Python object ({refused[1]}), not only tensors "
                              f"and plain data; refused (splat4d never runs code from a checkpoint){old}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a splat4d checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt.get('version')}, this splat4d reads {VERSION}")
    if method is not None and ckpt.get("method") != method:
        raise CheckpointError(f"{path} is a checkpoint of method {ckpt.get('method')!r}, not {method!r}")
    check_payload(ckpt, path)
    return ckpt


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _is_step(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# entry -> (test, what it must be); the payload `Trainer.state()` writes
PAYLOAD = {
    "method": (lambda v: isinstance(v, str), "a method name"),
    "config": (lambda v: isinstance(v, dict), "a mapping (the run's config)"),
    "step": (_is_step, "an integer >= 0"),
    "model": (_is_tensor_dict, "a mapping of parameter names to tensors"),
    "extra": (lambda v: isinstance(v, dict), "a mapping"),
    "optimizer": (lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict)
                  and isinstance(v.get("param_groups"), list), "an optimizer state (state, param_groups)"),
    "sampler": (lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1,
                "a uint8 generator state"),
    "order": (lambda v: isinstance(v, list) and all(_is_step(i) for i in v), "a list of view indices"),
}


def check_payload(ckpt: dict, path: Path) -> None:
    """Every entry `Trainer.state()` writes is there with the right type (CheckpointError otherwise)."""
    missing = [k for k in PAYLOAD if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks entr{'y' if len(missing) == 1 else 'ies'} "
                              f"{', '.join(missing)}")
    for key, (test, what) in PAYLOAD.items():
        if not test(ckpt[key]):
            raise CheckpointError(f"checkpoint {path}: entry {key!r} must be {what}, got {type(ckpt[key]).__name__}")


def state_size_mb(state: dict) -> float:
    """Size of a model state dict serialised with torch.save, in MB (`splat4d.metrics.BYTES_PER_MB`)."""
    from splat4d.metrics import BYTES_PER_MB

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell() / BYTES_PER_MB
