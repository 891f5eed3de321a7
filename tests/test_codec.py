"""The codec building blocks: the .s4d container (round trip, every kind of damage detected and named),
entropy coding under quantised Gaussians (identity, rate vs closed form, bytes vs estimate) and Draco
point positions (order kept, error within half a grid step)."""

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splat4d.codec import container
from splat4d.codec.entropy import (SCALE_MIN, closed_form_entropy_bits, decode_gaussian, encode_gaussian,
                                   estimated_bits, gaussian_bits)
from splat4d.codec.positions import decode_positions, encode_positions, grid_step
from splat4d.errors import BitstreamError

pytest.importorskip("constriction")
pytest.importorskip("DracoPy")

SECTIONS = {"header": b'{"method": "adcgs"}', "anchors": bytes(range(256)) * 3, "empty": b"", "f_v": b"\x00\x01"}


# ----------------------------------------------------------------------------- container
def test_container_round_trip_and_atomic_write(tmp_path):
    path = container.write_bitstream(tmp_path / "scene.s4d", SECTIONS)
    assert container.is_bitstream(path) and not container.is_bitstream(tmp_path)
    got = container.read_bitstream(path, required=("header", "anchors"))
    assert got == SECTIONS and list(got) == list(SECTIONS)
    assert sorted(os.listdir(tmp_path)) == ["scene.s4d"]  # no temporary left behind
    with pytest.raises(BitstreamError, match="lacks section 'f_g'"):
        container.read_bitstream(path, required=("f_g",))


def test_container_names_what_is_wrong():
    data = container.pack(SECTIONS)
    with pytest.raises(BitstreamError, match="wrong magic"):
        container.unpack(b"PK\x03\x04" + data[4:])
    newer = bytearray(container.pack(SECTIONS, version=container.FORMAT_VERSION + 1))
    with pytest.raises(BitstreamError, match="newer than this splat4d reads"):
        container.unpack(bytes(newer))
    with pytest.raises(BitstreamError, match="section 'anchors'"):
        flipped = bytearray(data)
        flipped[data.index(bytes(range(256))) + 10] ^= 0x01
        container.unpack(bytes(flipped))
    with pytest.raises(BitstreamError, match="truncated"):
        container.unpack(data[:-1])
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        container.unpack(data + b"\x00")


def test_every_flipped_bit_and_every_truncation_is_detected():
    data = container.pack(SECTIONS)
    for i in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                container.unpack(bytes(bad))
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            container.unpack(data[:n])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_damage_always_gives_bitstream_error(data):
    blob = container.pack(SECTIONS)
    kind = data.draw(st.sampled_from(["flip", "truncate", "both"]))
    bad = bytearray(blob)
    if kind in ("flip", "both"):
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(bad) - 1))
            bad[i] ^= data.draw(st.integers(1, 255))
    if kind in ("truncate", "both"):
        bad = bad[: data.draw(st.integers(0, len(bad) - 1))]
    if bytes(bad) == blob:
        return
    with pytest.raises(BitstreamError):
        container.unpack(bytes(bad))


def test_unreadable_path_is_a_bitstream_error(tmp_path):
    with pytest.raises(BitstreamError, match="cannot read"):
        container.read_bitstream(tmp_path / "missing.s4d")


# ----------------------------------------------------------------------------- entropy coding
def _symbols(n=50_000, seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(0, 4, n)
    scale = rng.uniform(0.15, 6.0, n)
    return np.round(rng.normal(mean, scale)).astype(np.int32), mean, scale


def test_encode_decode_identity_and_bytes_match_the_estimate():
    x, mean, scale = _symbols()
    payload = encode_gaussian(x, mean, scale)
    assert np.array_equal(decode_gaussian(payload, mean, scale), x)
    ratio = len(payload) * 8 / estimated_bits(x, mean, scale)
    assert 0.99 < ratio <= 1.02, ratio  # measured 1.0004


def test_rate_of_a_known_distribution_is_its_entropy():
    # mean bits of samples of round(N(0, s^2)) -> the closed-form entropy of that discrete distribution
    gen = torch.Generator().manual_seed(0)
    for s in (0.5, 2.0, 8.0):
        x = torch.round(torch.randn(200_000, generator=gen, dtype=torch.float64) * s)
        bits = gaussian_bits(x, torch.zeros(()), torch.tensor(s, dtype=torch.float64)).mean()
        assert float(bits) == pytest.approx(closed_form_entropy_bits(s), rel=0.01)
    # a single symbol at the mean of a wide Gaussian: -log2(erf(1 / (2 sqrt(2) s)))
    s = 3.0
    expected = -math.log2(math.erf(0.5 / (s * math.sqrt(2))))
    assert float(gaussian_bits(torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.0), torch.tensor(s))) == \
        pytest.approx(expected, rel=1e-9)


def test_rate_is_differentiable_and_scales_are_clamped():
    x = torch.tensor([0.3, -1.7, 4.0], requires_grad=True)
    mean = torch.tensor([0.0, -1.0, 1.0], requires_grad=True)
    scale = torch.tensor([1.0, 0.01, 2.0], requires_grad=True)
    gaussian_bits(x, mean, scale).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (x, mean, scale))
    assert scale.grad[1] == 0  # below SCALE_MIN: clamped, as the coder clamps it
    a = gaussian_bits(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.01))
    b = gaussian_bits(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(SCALE_MIN))
    assert torch.equal(a, b)
    # the coder agrees at the clamp: tiny scales code and decode too
    sym = np.array([0, 0, 1, -1], np.int32)
    payload = encode_gaussian(sym, np.zeros(4), np.full(4, 1e-4))
    assert np.array_equal(decode_gaussian(payload, np.zeros(4), np.full(4, 1e-4)), sym)


def test_damaged_entropy_payload_is_a_bitstream_error():
    x, mean, scale = _symbols(1000)
    payload = encode_gaussian(x, mean, scale)
    with pytest.raises(BitstreamError, match="section 'f_v'"):
        decode_gaussian(payload[:5], mean, scale, section="f_v")
    same = np.full(50, 7, np.int32)  # one symbol value only
    assert np.array_equal(decode_gaussian(encode_gaussian(same, np.zeros(50), np.ones(50)), np.zeros(50), np.ones(50)), same)
    empty = encode_gaussian(np.zeros(0, np.int32), np.zeros(0), np.ones(0))
    assert decode_gaussian(empty, np.zeros(0), np.ones(0)).shape == (0,)


# ----------------------------------------------------------------------------- positions
def test_draco_positions_keep_order_within_half_a_step():
    rng = np.random.default_rng(0)
    pts = (rng.normal(size=(5000, 3)) * [1.0, 2.0, 0.5]).astype(np.float32)
    for bits in (11, 16):
        payload = encode_positions(pts, bits=bits)
        out = decode_positions(payload, len(pts))
        assert out.shape == pts.shape
        assert np.abs(out - pts).max() <= 0.5 * grid_step(pts, bits) * 1.01 + 1e-6
    assert len(encode_positions(pts, bits=11)) < len(encode_positions(pts, bits=16))
    with pytest.raises(BitstreamError, match="4999 expected"):
        decode_positions(encode_positions(pts), 4999)
    with pytest.raises(BitstreamError, match="Draco decoding failed"):
        decode_positions(b"not draco at all", 10)
