"""OpenCV FileStorage YAML (`%YAML:1.0`, `!!opencv-matrix`) without OpenCV, plus Rodrigues vectors.

PyYAML rejects the `%YAML:1.0` directive and does not know the `opencv-matrix` tag, so the reader
drops the directive, builds matrices in a tag constructor and keeps every plain scalar a string
(camera names like `00` must not turn into octal integers); callers convert numbers they expect.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from splat4d.errors import DatasetError

_MATRIX_TAG = "tag:yaml.org,2002:opencv-matrix"


class _Loader(yaml.SafeLoader):
    pass


# no implicit int/float/bool/null resolution: plain scalars stay strings
_Loader.yaml_implicit_resolvers = {}


def _to_float(s) -> float:
    if isinstance(s, (int, float)):
        return float(s)
    t = str(s).strip().lower()
    specials = {".nan": math.nan, "nan": math.nan, ".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf}
    return specials[t] if t in specials else float(t)


def _construct_matrix(loader: yaml.Loader, node: yaml.Node) -> np.ndarray:
    m = loader.construct_mapping(node, deep=True)
    rows, cols = int(m["rows"]), int(m["cols"])
    data = m["data"] if isinstance(m["data"], list) else [m["data"]]
    arr = np.array([_to_float(v) for v in data], dtype=np.float64)
    if arr.size != rows * cols:
        raise ValueError(f"opencv-matrix has {arr.size} values for {rows}x{cols}")
    return arr.reshape(rows, cols)  # float64 whatever `dt` says: every consumer here wants floats


_Loader.add_constructor(_MATRIX_TAG, _construct_matrix)


def read_opencv_yaml(file: Path) -> dict:
    """Top-level mapping of a FileStorage YAML file: matrices as float ndarrays, scalars as strings."""
    file = Path(file)
    try:
        lines = file.read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"unreadable {file}: {e}") from None
    if lines and lines[0].startswith("%YAML"):
        lines = lines[1:]
    try:
        out = yaml.load("\n".join(lines), Loader=_Loader)
    except Exception as e:  # yaml.YAMLError, ValueError from a bad matrix, KeyError for missing rows/cols
        raise DatasetError(f"unreadable OpenCV YAML {file}: {type(e).__name__}: {e}") from None
    if out is None:
        return {}
    if not isinstance(out, dict):
        raise DatasetError(f"{file} is not an OpenCV FileStorage mapping")
    return out


def _fmt(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return ".Nan"
    if math.isinf(v):
        return ".Inf" if v > 0 else "-.Inf"
    return repr(v)  # shortest exact round trip


def write_opencv_yaml(file: Path, entries: dict) -> None:
    """Write `entries` (2-D arrays -> opencv-matrix, lists of str -> sequences, numbers -> scalars)."""
    out = ["%YAML:1.0", "---"]
    for key, val in entries.items():
        if isinstance(val, np.ndarray):
            m = np.atleast_2d(np.asarray(val, dtype=np.float64))
            out += [
                f"{key}: !!opencv-matrix",
                f"   rows: {m.shape[0]}",
                f"   cols: {m.shape[1]}",
                "   dt: d",
                f"   data: [ {', '.join(_fmt(x) for x in m.ravel())} ]",
            ]
        elif isinstance(val, (list, tuple)):
            out.append(f"{key}:")
            out += [f'   - "{v}"' for v in val]
        elif isinstance(val, (int, np.integer)):
            out.append(f"{key}: {int(val)}")
        else:
            out.append(f"{key}: {_fmt(val)}")
    Path(file).write_text("\n".join(out) + "\n")


def rodrigues_to_matrix(r: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) or (3, 1) -> rotation matrix [3, 3] (OpenCV's cv2.Rodrigues)."""
    r = np.asarray(r, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(r))
    K = np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
    if theta < 1e-12:
        return np.eye(3) + K
    K /= theta
    return np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * (K @ K)


def matrix_to_rodrigues(R: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> axis-angle vector [3, 1] (inverse of `rodrigues_to_matrix`)."""
    R = np.asarray(R, dtype=np.float64)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2  # sin(theta) * axis
    s = float(np.linalg.norm(w))
    c = float(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))
    theta = math.atan2(s, c)
    if s > 1e-5:
        return (w / s * theta).reshape(3, 1)
    if c > 0:  # theta ~ 0
        return w.reshape(3, 1)
    # theta ~ pi: R = 2 a a^T - I; take the best-conditioned column of R + I
    B = (R + R.T) / 4 + np.eye(3) / 2  # symmetric part only: the skew part is sin(theta) noise here
    i = int(np.argmax(np.diag(B)))
    a = B[:, i] / math.sqrt(max(B[i, i], 1e-300))
    a /= np.linalg.norm(a)
    if float(a @ w) < 0:  # just below pi the sign still matters; the tiny skew part tells it
        a = -a
    return (a * theta).reshape(3, 1)
