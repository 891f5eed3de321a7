"""ADC-GS's entropy model (eqs. 6-9): quantisation noise vs rounding, shapes, chunk context order, and
compress -> decompress identity with bytes matching the estimated bits."""

import numpy as np
import pytest
import torch

from splat4d.errors import BitstreamError
from splat4d.methods.adcgs.entropy_model import EntropyDims, EntropyModel, quantise

pytest.importorskip("constriction")

DIMS = EntropyDims(f_v=8, f_g=16, cov=6, col=3, chunks=4, hyper=4, hidden=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def _attributes(a=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(a, DIMS.f_v, generator=g), torch.randn(a, DIMS.f_g, generator=g) * 0.5,
            torch.randn(a, DIMS.cov, generator=g) * 0.05, torch.rand(a, DIMS.col, generator=g))


def _model(seed=0):
    torch.manual_seed(seed)
    m = EntropyModel(DIMS)
    with torch.no_grad():  # a non-trivial model: random output layers, so contexts matter
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def test_quantise_noise_within_half_a_step_rounding_on_the_grid():
    x = torch.randn(1000, 3, dtype=torch.float64, requires_grad=True)
    step = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    noisy = quantise(x, step, "noise", torch.Generator().manual_seed(0))
    assert ((noisy - x).abs() <= step / 2 + 1e-12).all()
    assert ((noisy - x).abs() > step / 4).any()  # noise is really there
    noisy.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # the noise passes gradients straight through
    r = quantise(x.detach(), step, "round")
    assert torch.allclose(r / step, torch.round(r / step)) and ((r - x).abs() <= step / 2 + 1e-12).all()
    assert torch.equal(quantise(x, step, "none"), x)
    with pytest.raises(ValueError):
        quantise(x, step, "floor")


def test_forward_shapes_and_positive_bits():
    m = _model()
    f_v, f_g, cov, col = _attributes()
    out, bits = m(f_v, f_g, cov, col, mode="noise", generator=torch.Generator().manual_seed(0))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"f_v": (300, 8), "f_g": (300, 16), "cov": (300, 6),
                                                           "col": (300, 3)}
    assert set(bits) == {"hyper", "f_v", "cov", "col", "f_g"}
    assert all(b.shape == (300,) and (b > 0).all() for b in bits.values())
    m.total_bits(bits).backward()  # the rate reaches the networks and the prior
    assert m.hyper_log_scale.grad is not None and m.chunk_models[3].net.out_layer.weight.grad.abs().sum() > 0


def test_chunk_m_is_conditioned_on_earlier_chunks_only():
    m = _model()
    f_v, f_g, _, _ = _attributes(20)
    f_g = f_g.clone().requires_grad_(True)
    c = DIMS.f_g // DIMS.chunks
    for k, (mean, scale, step) in enumerate(m.chunk_params(f_v, f_g)):
        grads = torch.autograd.grad(mean.sum() + scale.sum() + step.sum(), f_g, allow_unused=True)[0]
        per_chunk = (grads if grads is not None else torch.zeros_like(f_g)).abs().reshape(20, DIMS.chunks, c).sum((0, 2))
        assert (per_chunk[k:] == 0).all(), (k, per_chunk)  # nothing from this chunk or later ones
        assert (per_chunk[:k] > 0).all(), (k, per_chunk)  # everything from the earlier ones


def test_compress_decompress_identity_and_bytes_match_the_estimate():
    m = _model()
    f_v, f_g, cov, col = _attributes(2000)
    payloads, coded = m.compress(f_v, f_g, cov, col)
    assert set(payloads) == {"hyper", "f_v", "cov", "col", "f_g.0", "f_g.1", "f_g.2", "f_g.3"}
    decoded = m.decompress(payloads, 2000)
    for k in coded:
        assert torch.equal(decoded[k], coded[k]), k
    # rounding at test time in the model itself gives the same values (float32 vs float64 aside)
    out, bits = m.double()(*(t.double() for t in (f_v, f_g, cov, col)), mode="round")
    for k in coded:
        assert torch.allclose(out[k], coded[k], atol=1e-9), k
    written = sum(len(p) for p in payloads.values()) * 8
    estimated = float(m.total_bits(bits).detach())
    assert written / estimated <= 1.02, written / estimated


def test_damaged_payloads_are_bitstream_errors():
    m = _model()
    payloads, _ = m.compress(*_attributes(100))
    with pytest.raises(BitstreamError, match="'f_g.2'"):
        m.decompress({**payloads, "f_g.2": payloads["f_g.2"][:6]}, 100)
    with pytest.raises(BitstreamError, match="lacks section 'col'"):
        m.decompress({k: v for k, v in payloads.items() if k != "col"}, 100)
    with pytest.raises(BitstreamError, match="symbols, 404 expected"):
        m.decompress(payloads, 101)
