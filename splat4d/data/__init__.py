"""Datasets: `DynamicScene` plus one reader per on-disk format, chosen by name or detected.

Every reader module has `detect(path) -> bool`, `load(path, scale, background, ...) -> DynamicScene`
and a one-line `LAYOUT`. `View.camera` always describes the image exactly as its `ImageRef` returns
it, and `DynamicScene.scale` is the resize still applied on top; readers that read pre-downscaled
sources (HyperNeRF rgb/<s>x folders, Neu3D videos decoded at the requested size) store the cameras of
those sources and a correspondingly smaller `scale` (1.0 when the source already matches), so
`scene.camera(view)`, `scene.image(view)` and `scene.resolution` are what was requested either way.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np

from splat4d.data import dnerf, easyvolcap, hypernerf, neu3d
from splat4d.data.scene import (
    ArrayImage,
    CallableImage,
    DynamicScene,
    FileImage,
    ImageRef,
    View,
    count_unique_cameras,
)
from splat4d.errors import BitstreamError, ConfigError, DatasetError

# detection order: the most specific layouts first (an EasyVolcap or HyperNeRF export may also
# carry a poses_bounds.npy or transforms json from another tool)
READERS = {"easyvolcap": easyvolcap, "hypernerf": hypernerf, "neu3d": neu3d, "dnerf": dnerf}

__all__ = [
    "READERS", "load_scene", "locate", "detect_format", "parse_background", "resolve_background", "is_auto",
    "AUTO_BACKGROUND",
    "check_scene", "DynamicScene", "View", "ImageRef", "FileImage", "ArrayImage", "CallableImage",
    "count_unique_cameras",
]

AUTO_BACKGROUND = "auto"
"""The background value that means "the format's convention" (see `resolve_background`)."""
_FORMAT_LABELS = {"dnerf": "D-NeRF", "neu3d": "Neu3D", "hypernerf": "HyperNeRF", "easyvolcap": "EasyVolcap",
                  "synthetic": "synthetic"}

_NAMED_BACKGROUNDS = {
    "black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "gray": (0.5, 0.5, 0.5), "grey": (0.5, 0.5, 0.5),
}
_INT_RE = re.compile(r"^[+-]?\d+$")


def parse_background(value) -> tuple[float, float, float]:
    """Background colour -> RGB floats in [0, 1].

    Accepts "black", "white", "gray", "#RRGGBB", "R,G,B" and 3-sequences. Components written with a
    decimal point are 0-1 floats; integers are 0-255, except that all-0/1 integers ("1,1,1", "0,0,1")
    are read as 0-1 since nobody means near-black by them.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NAMED_BACKGROUNDS:
            return _NAMED_BACKGROUNDS[text]
        if re.fullmatch(r"#[0-9a-f]{6}", text):
            return tuple(int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [p.strip() for p in text.split(",")]
        try:
            comps = [int(p) if _INT_RE.match(p) else float(p) for p in parts]
        except ValueError:
            comps = None
        if comps is None or len(comps) != 3:
            raise ConfigError(
                f"bad background {value!r}: use black, white, gray, #RRGGBB, 'R,G,B' (0-1 floats or 0-255 ints)"
            )
    else:
        try:
            comps = list(value)
        except TypeError:
            raise ConfigError(f"bad background {value!r}: expected a colour name, 'R,G,B' or 3 numbers") from None
        if len(comps) != 3 or not all(isinstance(c, (int, float, np.integer, np.floating)) for c in comps):
            raise ConfigError(f"bad background {value!r}: expected 3 numbers")
        comps = [int(c) if isinstance(c, (int, np.integer)) else float(c) for c in comps]
    ints = all(isinstance(c, int) for c in comps)
    if ints and any(c > 1 for c in comps):
        if not all(0 <= c <= 255 for c in comps):
            raise ConfigError(f"bad background {value!r}: integer components must be in 0-255")
        return tuple(c / 255.0 for c in comps)  # type: ignore[return-value]
    if not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in comps):
        raise ConfigError(f"bad background {value!r}: float components must be in [0, 1]")
    return tuple(float(c) for c in comps)  # type: ignore[return-value]


def detect_format(path: str | Path) -> str | None:
    """Name of the first reader whose layout matches the folder, else None."""
    path = Path(path)
    for name, reader in READERS.items():
        if reader.detect(path):
            return name
    return None


def locate(path: str | Path, format: str | None = None) -> tuple[str, str | Path]:
    """Which reader `load_scene` would use: ("synthetic", preset name) or (reader name, dataset folder).
    Raises what `load_scene` raises for a missing path, an unknown format or an unrecognised layout."""
    spec = str(path)
    if format == "synthetic" or spec == "synthetic" or spec.startswith("synthetic:"):
        name = spec.split(":", 1)[1] if spec.startswith("synthetic:") else ("" if spec == "synthetic" else spec)
        return "synthetic", name or "default"
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"no such dataset path {p}")
    if p.is_file():  # e.g. transforms_train.json, poses_bounds.npy, intri.yml, dataset.json
        from splat4d.codec.container import is_bitstream

        if is_bitstream(p):
            raise BitstreamError(f"{p} is a splat4d bitstream (.s4d), not a dataset: give it to eval, render or "
                                 f"export, or decode it with 'splat4d decompress'")
        p = p.parent
    if format is not None:
        if format not in READERS:
            raise ConfigError(f"unknown dataset format {format!r}; choose from {', '.join(READERS)} or synthetic")
        return format, p
    name = detect_format(p)
    if name is None:
        layouts = " | ".join(r.LAYOUT for r in READERS.values())
        raise DatasetError(f"{p} matches no known dataset layout; expected one of: {layouts}")
    return name, p


def resolve_background(background, path: str | Path, format: str | None = None) -> tuple[str, str]:
    """The colour a dataset is composited on, and why: `background` itself unless it is "auto".

    "auto" follows the format's convention: white for D-NeRF (`dnerf.DEFAULT_BACKGROUND`: published
    D-NeRF numbers are on white), the colour recorded in an EasyVolcap folder's splat4d.json (written by
    `write_easyvolcap`, so a converted D-NeRF scene stays on white), black for everything else (synthetic
    scenes, Neu3D, HyperNeRF, other EasyVolcap folders). Resolved once where the format is detected, so
    a run's config.yaml records the colour actually used.

    Returns:
        (colour, reason): e.g. ("white", "D-NeRF default") or ("black", "given").
    """
    if not is_auto(background):
        return background, "given"
    return _format_background(*locate(path, format))


def is_auto(background) -> bool:
    """Whether `background` is "auto" (any case, surrounding spaces allowed, as colour names are)."""
    return isinstance(background, str) and background.strip().lower() == AUTO_BACKGROUND


def _format_background(kind: str, where) -> tuple[str, str]:
    label = _FORMAT_LABELS.get(kind, kind)
    if kind == "easyvolcap":
        recorded = easyvolcap.recorded_background(where)  # type: ignore[arg-type]
        if recorded is not None:
            return _named(recorded), f"recorded in {easyvolcap.META_FILE}"
    reader = READERS.get(kind)
    return getattr(reader, "DEFAULT_BACKGROUND", "black"), f"{label} default"


def _named(colour: str) -> str:
    """A colour string as its name when it is a named colour (black, white, gray)."""
    rgb = parse_background(colour)
    for name in ("black", "white", "gray"):
        if rgb == _NAMED_BACKGROUNDS[name]:
            return name
    return colour


def load_scene(
    path: str | Path,
    scale: float = 1.0,
    background="auto",
    format: str | None = None,
    **options,
) -> DynamicScene:
    """Load a dataset folder (format detected unless `format` is given) or a synthetic scene.

    Args:
        path: dataset folder (or a file inside it), or "synthetic" / "synthetic:NAME".
        scale: image resolution factor (0.5 = half width and height).
        background: colour RGBA images are composited on (see `parse_background`), or "auto": the
            format's convention (white for D-NeRF, else black; see `resolve_background`).
        format: force a reader: one of READERS (or "synthetic").
        options: reader-specific keyword arguments (e.g. test_cams for easyvolcap).
    """
    if not is_auto(background):
        parse_background(background)  # a bad colour is reported before the path is looked at
    kind, where = locate(path, format)
    bg = parse_background(_format_background(kind, where)[0] if is_auto(background) else background)
    if kind == "synthetic":
        from splat4d.data.synthetic import load_synthetic

        return load_synthetic(str(where), scale=scale, background=bg, **options)
    reader = READERS[kind]
    accepted = set(inspect.signature(reader.load).parameters) - {"path", "scale", "background"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"the {kind} reader takes no option(s) {', '.join(unknown)} (it takes {sorted(accepted)})")
    return reader.load(where, scale=scale, background=bg, **options)


def check_scene(scene: DynamicScene) -> list[str]:
    """Decode every image and mask of every split; one problem string per unreadable or mis-sized file."""
    problems: list[str] = []
    seen: set = set()
    for views in scene.splits.values():
        for v in views:
            for kind, ref in (("image", v.image), ("mask", v.mask)):
                if ref is None:
                    continue
                key = (kind, ref.name) if not ref.name.startswith("<") else id(ref)
                if key in seen:
                    continue
                seen.add(key)
                problem = _check_ref(kind, ref, v)
                if problem:
                    problems.append(problem)
    return problems


def _check_ref(kind: str, ref: ImageRef, view: View) -> str | None:
    try:
        arr = np.asarray(ref.read())
    except DatasetError as e:
        return str(e)
    except Exception as e:  # a reader bug or an odd decoder error: still one line about this file
        return f"unreadable {kind} {ref.name}: {type(e).__name__}: {e}"
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        return f"{kind} {ref.name} has shape {tuple(arr.shape)}, expected [H, W, 1|3|4]"
    if arr.dtype != np.uint8:
        return f"{kind} {ref.name} has dtype {arr.dtype}, expected uint8"
    w, h = view.camera.width, view.camera.height
    if arr.shape[:2] != (h, w):
        return f"{kind} {ref.name} is {arr.shape[1]}x{arr.shape[0]}, expected {w}x{h}"
    return None
