"""Point positions coded with Draco (DracoPy): quantised to a grid over their bounding box, order kept so
they stay aligned with the per-point features coded elsewhere."""

from __future__ import annotations

import numpy as np

from splat4d.errors import BitstreamError, ConfigError


def _draco():
    try:
        import DracoPy
    except ImportError:
        raise ConfigError("point coding needs the 'DracoPy' package: pip install 'splat4d[codec]'") from None
    return DracoPy


def encode_positions(points: np.ndarray, bits: int = 16, level: int = 7) -> bytes:
    """Draco bytes of points [N, 3] quantised with `bits` per axis over their box (error <= half a grid
    step: box size / (2^bits - 1) / 2 per axis), in the given order."""
    d = _draco()
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    if not np.isfinite(pts).all():
        raise ValueError("point positions must be finite")
    if not 1 <= bits <= 30:
        raise ValueError(f"bits must be in [1, 30], got {bits}")
    return bytes(d.encode(pts, quantization_bits=bits, compression_level=level, preserve_order=True))


def decode_positions(payload: bytes, count: int, section: str = "positions") -> np.ndarray:
    """Points [count, 3] float32 of `encode_positions` bytes; BitstreamError when they do not decode or
    hold another number of points."""
    d = _draco()
    try:
        pc = d.decode(payload)
        pts = np.asarray(pc.points, dtype=np.float32).reshape(-1, 3)
    except Exception as e:
        raise BitstreamError(f"section {section!r}: Draco decoding failed ({e})") from None
    if len(pts) != count:
        raise BitstreamError(f"section {section!r}: {len(pts)} points decoded, {count} expected")
    return pts


def grid_step(points: np.ndarray, bits: int = 16) -> float:
    """Largest quantisation step Draco uses for these points at `bits` (the box's longest side / (2^bits - 1))."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        return 0.0
    return float((pts.max(0) - pts.min(0)).max() / (2**bits - 1))
