"""Entropy coding of integer symbols under per-symbol quantised Gaussians, and the bit cost training
estimates for them, from one formula.

A symbol x (an integer: a rounded feature) with predicted mean mu and scale sigma costs
``-log2(P(x))`` with ``P(x) = Phi((x + 1/2 - mu) / sigma) - Phi((x - 1/2 - mu) / sigma)``: the Gaussian's mass
on the unit bin around x. `gaussian_bits` computes it in torch (differentiable, also for the continuous
noisy values training uses), and `encode_gaussian` / `decode_gaussian` code with constriction's ANS coder
under the same quantised Gaussian (`QuantizedGaussian`), so the rate a model is trained on is the rate the
file pays (ADC-GS's released code estimates with one distribution and codes with another; here a test
holds bytes written / bits estimated <= 1.02). Scales are clamped to SCALE_MIN in both.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
from torch import Tensor

from splat4d.errors import BitstreamError, ConfigError

SCALE_MIN = 0.11
"""Smallest scale either side uses (as CompressAI's Gaussian conditional): below it the bin around the mean
holds nearly all the mass and the coder's fixed-point probabilities would cost more than the estimate."""
MIN_LIKELIHOOD = 1e-9
"""Floor of a symbol's estimated probability (about 30 bits), so the rate of a wild outlier stays finite."""
_HEAD = struct.Struct("<iiI")  # lowest symbol, highest symbol, symbol count


def gaussian_likelihood(x: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """P(x) of the unit bin around x under N(mean, scale^2), elementwise (broadcasting); computed in the
    lower tail (|x - mean|) where float precision holds, floored at MIN_LIKELIHOOD."""
    v = (x - mean).abs()
    s = scale.clamp_min(SCALE_MIN)
    upper = torch.special.ndtr((0.5 - v) / s)
    lower = torch.special.ndtr((-0.5 - v) / s)
    return (upper - lower).clamp_min(MIN_LIKELIHOOD)


def gaussian_bits(x: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """Bits of each x under the quantised Gaussian (elementwise, differentiable in x, mean and scale)."""
    return -torch.log2(gaussian_likelihood(x, mean, scale))


def _constriction():
    try:
        import constriction
    except ImportError:
        raise ConfigError("entropy coding needs the 'constriction' package: pip install 'splat4d[codec]'") from None
    return constriction


def _params(symbols: np.ndarray, means, scales) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(torch.as_tensor(means).detach().cpu().double().reshape(-1))
    s = np.asarray(torch.as_tensor(scales).detach().cpu().double().clamp_min(SCALE_MIN).reshape(-1))
    if m.shape != symbols.shape or s.shape != symbols.shape:
        raise ValueError(f"means {m.shape} and scales {s.shape} must match the {symbols.shape} symbols")
    if not (np.isfinite(m).all() and np.isfinite(s).all()):
        raise ValueError("means and scales must be finite")
    return m, s


MAX_SUPPORT = 1 << 16
"""Widest symbol range coded in one section: constriction gives every symbol of the range at least one
2^-24 share of probability, so a range of 2^16 costs at most 0.4 % of it."""


def _support(sym: np.ndarray, m: np.ndarray, s: np.ndarray) -> tuple[int, int]:
    """The symbol range [lo, hi] of a section: every symbol, and each Gaussian's mean +- 8 scales where that
    stays within MAX_SUPPORT. constriction renormalises each distribution over the range, so a range that
    cut off part of a Gaussian would make the file cheaper than the estimate (which assumes none is cut)."""
    lo, hi = int(sym.min()), int(sym.max())
    wide_lo, wide_hi = int(np.floor((m - 8 * s).min())), int(np.ceil((m + 8 * s).max()))
    lo2, hi2 = min(lo, wide_lo), max(hi, wide_hi)
    if hi2 - lo2 <= MAX_SUPPORT:
        lo, hi = lo2, hi2
    return max(lo, -(2**31)), min(max(hi, lo + 1), 2**31 - 1)  # the coder needs at least two symbols


def encode_gaussian(symbols, means, scales) -> bytes:
    """Code integer `symbols` [N] with symbol i under the quantised N(means[i], scales[i]^2); returns the
    payload (symbol range and count, then the ANS words)."""
    c = _constriction()
    sym = np.asarray(torch.as_tensor(symbols).detach().cpu().reshape(-1).numpy()).astype(np.int64)
    m, s = _params(sym, means, scales)
    if len(sym) == 0:
        return _HEAD.pack(0, 0, 0)
    lo, hi = _support(sym, m, s)
    if int(sym.min()) < -(2**31) or int(sym.max()) >= 2**31:
        raise ValueError("symbols must fit in int32")
    model = c.stream.model.QuantizedGaussian(lo, hi)
    coder = c.stream.stack.AnsCoder()
    coder.encode_reverse(sym.astype(np.int32), model, m, s)
    words = coder.get_compressed()  # uint32
    return _HEAD.pack(lo, hi, len(sym)) + words.astype("<u4").tobytes()


def decode_gaussian(payload: bytes, means, scales, section: str = "?") -> np.ndarray:
    """Symbols [N] (int32) of a payload of `encode_gaussian`, given the same means and scales; a payload
    that does not decode raises BitstreamError naming `section`."""
    c = _constriction()
    if len(payload) < _HEAD.size or (len(payload) - _HEAD.size) % 4:
        raise BitstreamError(f"section {section!r}: malformed entropy-coded payload ({len(payload)} bytes)")
    lo, hi, n = _HEAD.unpack_from(payload, 0)
    expected = int(torch.as_tensor(means).numel())
    if n != expected:
        raise BitstreamError(f"section {section!r}: holds {n} symbols, {expected} expected")
    if n == 0:
        return np.zeros(0, np.int32)
    m, s = _params(np.zeros(int(n)), means, scales)
    if hi <= lo:
        raise BitstreamError(f"section {section!r}: invalid symbol range [{lo}, {hi}]")
    words = np.frombuffer(payload, dtype="<u4", offset=_HEAD.size).astype(np.uint32)
    try:
        coder = c.stream.stack.AnsCoder(words)
        out = coder.decode(c.stream.model.QuantizedGaussian(lo, hi), m, s)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # constriction raises, or panics (pyo3's PanicException is a BaseException)
        raise BitstreamError(f"section {section!r}: entropy decoding failed ({e})") from None
    return np.asarray(out, dtype=np.int32)


def estimated_bits(symbols, means, scales) -> float:
    """Total bits the entropy model estimates for integer `symbols` (what training's rate term sums)."""
    x = torch.as_tensor(symbols).double().reshape(-1)
    return float(gaussian_bits(x, torch.as_tensor(means).double().reshape(-1),
                               torch.as_tensor(scales).double().reshape(-1)).sum())


def closed_form_entropy_bits(scale: float, span: int = 64) -> float:
    """Entropy in bits of round(N(0, scale^2)) summed over integers in [-span, span] (for tests)."""
    k = torch.arange(-span, span + 1, dtype=torch.float64)
    p = torch.special.ndtr((k + 0.5) / scale) - torch.special.ndtr((k - 0.5) / scale)
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


__all__ = ["SCALE_MIN", "gaussian_likelihood", "gaussian_bits", "encode_gaussian", "decode_gaussian",
           "estimated_bits", "closed_form_entropy_bits"]
