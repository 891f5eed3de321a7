"""ADC-GS's multi-dimension entropy model (paper eqs. 6-9) and its adaptive quantisation.

Per anchor four attributes are quantised and entropy-coded: the reference feature f_v [A, Dv], the
residual features f_g [A, Dg] (in M channel chunks), the covariance Sigma_v [A, 6] and the colour C_v [A, 3].

- **Adaptive quantisation** (eq. 6): attribute i is quantised with step Q_i (1 + tanh(F_q(context))):
  uniform noise of that width while training, rounding to it at test time and in the bitstream. The paper
  writes F_q(f_i), but a decoder does not have f_i before decoding it, so here the step of each attribute
  comes from what is decoded before it (as in HAC, which ADC-GS builds on): the hyperprior for f_v, the
  decoded f_v for Sigma_v, C_v and the first chunk of f_g, plus the earlier chunks for the later ones.
- **Hyperprior** (eq. 7): eta = h_a(f_v), rounded (noise in training), coded under a factorised prior
  (an independent learned Gaussian per channel, so coder and estimate share one distribution family);
  h_s(eta_hat) gives mean and scale of each f_v channel.
- **Context** (eq. 8): the decoded f_v is the context of Sigma_v and C_v; chunk m of f_g is conditioned on
  f_v and chunks 1..m-1.
- **Rate** (eq. 9): the sum of `splat4d.codec.entropy.gaussian_bits` over every coded symbol; `compress`
  codes exactly those symbols under exactly those distributions (in float64 on the CPU, where the decoder
  recomputes them), so the estimate is what the file pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from splat4d.codec.entropy import SCALE_MIN, decode_gaussian, encode_gaussian, gaussian_bits
from splat4d.fields.mlp import MLP

ATTRIBUTES = ("f_v", "cov", "col", "f_g")
"""Coded anchor attributes, in decoding order (f_g in chunks after the others)."""


@dataclass(frozen=True)
class EntropyDims:
    """Widths of the coded attributes and of the entropy model's networks."""

    f_v: int = 32
    f_g: int = 160  # K primitives x 16
    cov: int = 6
    col: int = 3
    chunks: int = 4  # M channel chunks of f_g
    hyper: int = 8  # hyperprior channels
    hidden: int = 64


DEFAULT_STEPS = {"f_v": 0.1, "f_g": 0.1, "cov": 0.01, "col": 0.01, "hyper": 1.0}
"""Base quantisation steps Q_i (ADC-GS's defaults; the hyperprior latent is rounded to integers)."""


def quantise(x: Tensor, step: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """x quantised with `step` (broadcast): "noise" adds U(-1/2, 1/2) x step (training, eq. 6), "round"
    rounds to the step's grid (test time, the bitstream), "none" passes x through."""
    if mode == "none":
        return x
    if mode == "noise":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 0.5
        return x + u * step
    if mode == "round":
        return torch.round(x / step) * step
    raise ValueError(f"mode must be noise, round or none, got {mode!r}")


class _Conditional(nn.Module):
    """context [A, C] -> (mean [A, D], scale [A, D], step [A, D]) of one attribute."""

    def __init__(self, ctx: int, dim: int, hidden: int, base_step: float):
        super().__init__()
        self.net = MLP(ctx, hidden, 3 * dim, 1)
        self.dim, self.base_step = dim, float(base_step)

    def forward(self, ctx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, raw_scale, raw_step = self.net(ctx).split(self.dim, dim=-1)
        scale = nn.functional.softplus(raw_scale) + SCALE_MIN * 1e-3
        step = self.base_step * (1.0 + torch.tanh(raw_step))  # in (0, 2 Q_i)
        return mean, scale, step.clamp_min(self.base_step * 1e-3)


class EntropyModel(nn.Module):
    """The multi-dimension entropy model. `forward` quantises the attributes and returns their estimated
    bits; `compress` / `decompress` turn the rounded attributes into section payloads and back."""

    def __init__(self, dims: EntropyDims = EntropyDims(), steps: dict[str, float] | None = None):
        super().__init__()
        q = {**DEFAULT_STEPS, **(steps or {})}
        if dims.f_g % dims.chunks:
            raise ValueError(f"f_g width {dims.f_g} must be a multiple of the {dims.chunks} chunks")
        self.dims, self.steps = dims, q
        H = dims.hidden
        self.analysis = MLP(dims.f_v, H, dims.hyper, 1)  # h_a: f_v -> eta
        self.hyper_mean = nn.Parameter(torch.zeros(dims.hyper, device="cpu"))  # factorised prior of eta
        self.hyper_log_scale = nn.Parameter(torch.zeros(dims.hyper, device="cpu"))
        self.f_v_model = _Conditional(dims.hyper, dims.f_v, H, q["f_v"])  # h_s
        self.cov_model = _Conditional(dims.f_v, dims.cov, H, q["cov"])
        self.col_model = _Conditional(dims.f_v, dims.col, H, q["col"])
        c = dims.f_g // dims.chunks
        self.chunk_models = nn.ModuleList(_Conditional(dims.f_v + m * c, c, H, q["f_g"]) for m in range(dims.chunks))

    # ---------------------------------------------------------------- estimate
    def hyper_prior(self) -> tuple[Tensor, Tensor]:
        return self.hyper_mean, torch.exp(self.hyper_log_scale).clamp_min(SCALE_MIN)

    def forward(self, f_v: Tensor, f_g: Tensor, cov: Tensor, col: Tensor, mode: str = "noise",
                generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Quantise the attributes (each [A, D]) and estimate their bits.

        Returns:
            decoded: {"f_v", "f_g", "cov", "col"} -> [A, D] quantised values (what the decoder sees);
            bits: {"hyper", "f_v", "cov", "col", "f_g"} -> [A] estimated bits per anchor.
        """
        step = self.steps["hyper"]
        eta = quantise(self.analysis(f_v), torch.tensor(step, device=f_v.device), mode, generator)
        hm, hs = self.hyper_prior()
        bits = {"hyper": gaussian_bits(eta / step, hm, hs).sum(-1)}
        mean, scale, q = self.f_v_model(eta)
        f_v_hat = quantise(f_v, q, mode, generator)
        bits["f_v"] = gaussian_bits(f_v_hat / q, mean / q, scale / q).sum(-1)
        out = {"f_v": f_v_hat}
        for name, model, x in (("cov", self.cov_model, cov), ("col", self.col_model, col)):
            mean, scale, q = model(f_v_hat)
            out[name] = quantise(x, q, mode, generator)
            bits[name] = gaussian_bits(out[name] / q, mean / q, scale / q).sum(-1)
        chunks, chunk_bits = [], 0.0
        for m, (model, x) in enumerate(zip(self.chunk_models, f_g.chunk(self.dims.chunks, dim=-1))):
            mean, scale, q = model(torch.cat([f_v_hat, *chunks], dim=-1))
            chunks.append(quantise(x, q, mode, generator))
            chunk_bits = chunk_bits + gaussian_bits(chunks[-1] / q, mean / q, scale / q).sum(-1)
        out["f_g"] = torch.cat(chunks, dim=-1)
        bits["f_g"] = chunk_bits
        return out, bits

    def chunk_params(self, f_v_hat: Tensor, f_g_hat: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(mean, scale, step) of every f_g chunk given the decoded f_v and f_g: chunk m sees f_v and
        chunks 0..m-1 only (eq. 8)."""
        chunks = f_g_hat.chunk(self.dims.chunks, dim=-1)
        return [model(torch.cat([f_v_hat, *chunks[:m]], dim=-1)) for m, model in enumerate(self.chunk_models)]

    def total_bits(self, bits: dict[str, Tensor]) -> Tensor:
        """R of eq. 9: all estimated bits of all anchors."""
        return sum(b.sum() for b in bits.values())

    # ---------------------------------------------------------------- coding
    @torch.no_grad()
    def compress(self, f_v: Tensor, f_g: Tensor, cov: Tensor, col: Tensor) -> tuple[dict[str, bytes], dict[str, Tensor]]:
        """Payloads {"hyper", "f_v", "cov", "col", "f_g.0" ...} of the rounded attributes, and the decoded
        attributes (what `decompress` returns). Computed in float64 on the CPU, as the decoder does."""
        model = _float64_cpu(self)
        f_v, f_g, cov, col = (t.detach().double().cpu() for t in (f_v, f_g, cov, col))
        step = model.steps["hyper"]
        eta = torch.round(model.analysis(f_v) / step)
        hm, hs = model.hyper_prior()
        payloads = {"hyper": encode_gaussian(eta.int(), hm.expand_as(eta), hs.expand_as(eta))}
        eta = eta * step
        sym, f_v_hat = _symbols(f_v, *model.f_v_model(eta))
        payloads["f_v"] = sym
        out = {"f_v": f_v_hat}
        for name, sub, x in (("cov", model.cov_model, cov), ("col", model.col_model, col)):
            payloads[name], out[name] = _symbols(x, *sub(f_v_hat))
        chunks = []
        for m, (sub, x) in enumerate(zip(model.chunk_models, f_g.chunk(model.dims.chunks, dim=-1))):
            payloads[f"f_g.{m}"], hat = _symbols(x, *sub(torch.cat([f_v_hat, *chunks], dim=-1)))
            chunks.append(hat)
        out["f_g"] = torch.cat(chunks, dim=-1)
        return payloads, out

    @torch.no_grad()
    def decompress(self, payloads: dict[str, bytes], anchors: int) -> dict[str, Tensor]:
        """The decoded attributes ([A, D] float64 on the CPU) of `compress`'s payloads, decoded in order:
        hyperprior, f_v, Sigma_v, C_v, then the f_g chunks each with the earlier ones as context."""
        model = _float64_cpu(self)
        d, step = model.dims, model.steps["hyper"]
        hm, hs = model.hyper_prior()
        shape = (anchors, d.hyper)
        eta = _decode(payloads, "hyper", hm.expand(shape), hs.expand(shape), unit=1.0) * step
        f_v_hat = _decode_attr(payloads, "f_v", *model.f_v_model(eta))
        out = {"f_v": f_v_hat}
        for name, sub in (("cov", model.cov_model), ("col", model.col_model)):
            out[name] = _decode_attr(payloads, name, *sub(f_v_hat))
        chunks = []
        for m, sub in enumerate(model.chunk_models):
            chunks.append(_decode_attr(payloads, f"f_g.{m}", *sub(torch.cat([f_v_hat, *chunks], dim=-1))))
        out["f_g"] = torch.cat(chunks, dim=-1)
        return out


def _float64_cpu(model: EntropyModel) -> EntropyModel:
    """A float64 CPU copy of the model (coding must not depend on the device or on float32 rounding)."""
    import copy

    return copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()


def _symbols(x: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> tuple[bytes, Tensor]:
    """(payload, decoded values) of x rounded to `step` under N(mean, scale) in symbol units."""
    sym = torch.round(x / step)
    payload = encode_gaussian(sym.int().reshape(-1), (mean / step).reshape(-1), (scale / step).reshape(-1))
    return payload, sym * step


def _decode(payloads: dict[str, bytes], name: str, mean: Tensor, scale: Tensor, unit) -> Tensor:
    from splat4d.errors import BitstreamError

    if name not in payloads:
        raise BitstreamError(f"bitstream lacks section {name!r}")
    sym = decode_gaussian(payloads[name], (mean / unit).reshape(-1), (scale / unit).reshape(-1), section=name)
    return torch.from_numpy(np.asarray(sym, dtype=np.float64)).reshape(mean.shape)


def _decode_attr(payloads: dict[str, bytes], name: str, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    return _decode(payloads, name, mean, scale, step) * step
