"""Checks behind every config dataclass's `validate()`: each raises `ConfigError` with one line naming the
setting, what it must be and what it got, e.g. `train.iters must be an integer >= 1, got 0`.

Values from the command line and from config.yaml arrive here untyped (YAML gives strings, bools, lists
and None wherever a user writes them), so each check tests the type as well as the range, and refuses
bools where numbers belong, and NaN and infinities everywhere.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from splat4d.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def _show(value: Any) -> str:
    """How a bad value is quoted in a message: strings quoted, long values cut."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """`value` is an int (not a bool) in [lo, hi] (either bound may be None)."""
    if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be an integer {_range(lo, hi)}".rstrip() + f", got {_show(value)}")
    return value


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """`value` is a finite int or float (not a bool) within the bounds; `lo_open`/`hi_open` exclude them."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise ConfigError(f"{name} must be a finite number {_range(lo, hi, lo_open, hi_open)}".rstrip()
                          + f", got {_show(value)}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {_show(value)}")
    return value


def check_str(name: str, value: Any, optional: bool = False) -> str | None:
    """A non-empty string (or None when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {_show(value)}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str], optional: bool = False) -> str | None:
    """One of `choices` (or None when `optional`)."""
    choices = tuple(choices)
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {_show(value)}")
    return value


def check_ints(name: str, value: Any, lo: int | None = None, hi: int | None = None,
               length: int | None = None) -> tuple[int, ...]:
    """A non-empty tuple/list of ints in [lo, hi], of exactly `length` entries when given."""
    what = f"{length} integers" if length else "one or more integers"
    rng = _range(lo, hi)
    if (not isinstance(value, (tuple, list)) or not value or (length is not None and len(value) != length)
            or not all(_is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi) for v in value)):
        raise ConfigError(f"{name} must be {what}" + (f" {rng}" if rng else "") + f", got {_show(value)}")
    return tuple(value)


def split_commas(values) -> list[str]:
    """Command-line list items that may also be comma-separated ("a,b c" -> ["a", "b", "c"])."""
    return [x.strip() for item in values for x in str(item).split(",") if x.strip()]


def check_floats(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> tuple[float, ...]:
    """A non-empty tuple/list of finite numbers in [lo, hi]."""
    ok = isinstance(value, (tuple, list)) and len(value) > 0
    if ok:
        try:
            for v in value:
                check_float(name, v, lo, hi)
        except ConfigError:
            ok = False
    if not ok:
        raise ConfigError(f"{name} must be one or more finite numbers {_range(lo, hi)}".rstrip()
                          + f", got {_show(value)}")
    return tuple(float(v) for v in value)


def check_device(name: str, value: Any) -> str:
    """auto, cpu, cuda or cuda:N (whether CUDA exists is checked when the device is picked)."""
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value)):
        raise ConfigError(f"{name} must be one of {', '.join(DEVICES)}, got {_show(value)}")
    return value


def check_background(name: str, value: Any) -> str:
    """"auto" (the format's convention, `splat4d.data.resolve_background`) or a colour
    `splat4d.data.parse_background` reads."""
    from splat4d.data import is_auto, parse_background  # the data package is heavier than this module needs

    try:
        if not isinstance(value, str):
            raise ConfigError("not a string")
        if not is_auto(value):
            parse_background(value)
    except ConfigError:
        raise ConfigError(f"{name} must be auto, black, white, gray, #RRGGBB or 'R,G,B' (0-1 floats or 0-255 ints), "
                          f"got {_show(value)}") from None
    return value


def check_path(name: str, value: Any, optional: bool = False) -> Path | None:
    """A path given as a Path or a non-empty string (or None when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, (str, Path)) or not str(value).strip() or "\0" in str(value):
        raise ConfigError(f"{name} must be a path, got {_show(value)}")
    return Path(value)


def check_output_dir(name: str, value: Any) -> Path:
    """A folder that exists and is writable, or can be created: probed by creating it and a temp file in
    it, then removing everything the probe made (a refused run leaves nothing behind)."""
    path = check_path(name, value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {path} is an existing file, not a folder")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    made: list[Path] = []
    try:
        for p in reversed(missing):
            p.mkdir()
            made.append(p)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".splat4d-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(f"{name} {path} is not a writable folder ({e.strerror or type(e).__name__})") from None
    finally:
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError:
                pass
    return path


def check_output_file(name: str, value: Any, suffixes: tuple[str, ...] = ()) -> Path:
    """A file path whose folder is writable (see `check_output_dir`) and which is not a folder itself,
    ending in one of `suffixes` when given."""
    path = check_path(name, value)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{name} {path}: give a file name ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{name} {path} is a folder; give a file name")
    try:
        check_output_dir(name, path.parent)
    except ConfigError as e:
        raise ConfigError(f"{name} {path} cannot be written: {str(e).removeprefix(name + ' ')}") from None
    return path


def validate_nested(obj: Any, field: str, cls: type, prefix: str) -> None:
    """`obj.field` is a `cls` instance; validate it under `prefix.field`."""
    value = getattr(obj, field)
    if not isinstance(value, cls):
        raise ConfigError(f"{prefix}.{field} must be a mapping of {cls.__name__} settings, got {_show(value)}")
    value.validate(f"{prefix}.{field}")


def check_positive_lrs(obj: Any, prefix: str, names: Sequence[str]) -> None:
    """Learning rates: finite and > 0."""
    for n in names:
        check_float(f"{prefix}.{n}", getattr(obj, n), 0, None, lo_open=True)
