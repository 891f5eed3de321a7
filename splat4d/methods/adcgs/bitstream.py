"""ADC-GS's `.s4d` bitstream: what `splat4d compress` writes and `decompress`, `eval`, `render` and `export`
read (container: `splat4d.codec.container`).

Sections, in order:

- ``header``: JSON: format name, the run's resolved config (method, data, train), iteration, anchor count,
  time rows, scene extent, voxel, growth threshold, stage iterations, weight precision, position bits;
- ``networks``: every network tensor (theta, time table, F_s, coarse, fine, entropy model) as raw fp16 or fp32,
  or (int8) every matrix as int8 with an fp32 scale per row (symmetric, largest |w| of the row -> 127) and
  the vectors in fp16; a JSON index (no pickle);
- ``positions``: anchor positions quantised and coded with Draco, order kept (`codec.positions`);
- ``hyper``, ``f_v``, ``cov``, ``col``, ``f_g.0`` ... ``f_g.3``: the anchor attributes entropy-coded under the
  entropy model's own distributions (`EntropyModel.compress`), decoded in that order;
- ``temporal`` (models with a temporal opacity): every anchor's temporal centre, then its log-width, then
  (models with anchor velocities) its velocity, raw fp16 (4 or 10 bytes per anchor).

`encode` first makes the lossy choices on a copy of the model (network weights rounded to the stored
precision, positions through Draco, attributes rounded by the entropy model) and codes that copy, which is
returned as the reference: a decoded bitstream renders exactly like it (tested).
"""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import torch
from torch import Tensor

from splat4d.codec.container import FORMAT_VERSION, pack, unpack
from splat4d.codec.entropy import estimated_bits  # noqa: F401  (re-exported for reports)
from splat4d.codec.positions import decode_positions, encode_positions
from splat4d.errors import BitstreamError, ConfigError

FORMAT = "splat4d-adcgs"
ATTRIBUTE_SECTIONS = ("hyper", "f_v", "cov", "col")
WEIGHT_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
WEIGHTS = ("fp16", "fp32", "int8")
"""Precisions of the stored network weights (`--weights`)."""


def _network_state(method) -> dict[str, Tensor]:
    """Every tensor of the model but the per-anchor attributes (coded on their own) and the scalars the
    header holds exactly (extent, voxel, growth threshold: rounded to fp16 they moved the coarse network's
    position encoding, and the decoded frames, by up to 2e-3)."""
    skip = {f"field.{k}" for k in method.field.fields} | {"extent", "voxel", "grow_threshold"}
    return {k: v for k, v in method.state_dict().items() if k not in skip and v.is_floating_point()}


def _int8_rows(t: Tensor) -> tuple[Tensor, Tensor]:
    """(int8 values, fp32 scale per row) of a matrix (rows = first axis): round(w / scale), scale = the row's
    largest |w| / 127 (1 for an all-zero row)."""
    rows = t.detach().cpu().float().reshape(t.shape[0], -1)
    scale = rows.abs().amax(1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _from_int8(q: Tensor, scale: Tensor, shape) -> Tensor:
    """The weights `_int8_rows` stands for, computed the one way the encoder and the decoder share."""
    return (q.float() * scale[:, None]).reshape(shape)


def _stored(t: Tensor, weights: str) -> str:
    """How a tensor is stored: int8 rows for matrices under int8, else the float precision (vectors in fp16)."""
    if weights == "int8":
        return "int8" if t.dim() >= 2 and t.numel() > t.shape[0] else "fp16"
    return weights


def _as_stored(t: Tensor, weights: str) -> Tensor:
    """t with the precision it is stored in applied (what a decoder reads back), in t's dtype."""
    kind = _stored(t, weights)
    if kind == "int8":
        return _from_int8(*_int8_rows(t), t.shape).to(t.dtype)
    return t.to(WEIGHT_DTYPES[kind]).to(t.dtype)


def _pack_tensors(tensors: dict[str, Tensor], weights: str) -> bytes:
    index, blobs, offset = [], [], 0
    for name, t in tensors.items():
        kind = _stored(t, weights)
        if kind == "int8":
            q, scale = _int8_rows(t)
            data = q.numpy().tobytes() + scale.numpy().astype(np.float32).tobytes()
        else:
            data = t.detach().to("cpu", WEIGHT_DTYPES[kind]).contiguous().numpy().tobytes()
        index.append({"name": name, "shape": list(t.shape), "dtype": kind, "offset": offset, "bytes": len(data)})
        blobs.append(data)
        offset += len(data)
    head = json.dumps({"tensors": index}).encode()
    return len(head).to_bytes(4, "little") + head + b"".join(blobs)


def _unpack_tensors(payload: bytes) -> dict[str, Tensor]:
    try:
        n = int.from_bytes(payload[:4], "little")
        head = json.loads(payload[4 : 4 + n])
        body = payload[4 + n :]
        out = {}
        for e in head["tensors"]:
            kind = e.get("dtype", head.get("dtype"))  # format 1 wrote one dtype for the section
            shape, count = e["shape"], int(np.prod(e["shape"])) if e["shape"] else 1
            if kind == "int8":
                q = np.frombuffer(body, dtype=np.int8, count=count, offset=e["offset"])
                scale = np.frombuffer(body, dtype=np.float32, count=shape[0], offset=e["offset"] + count)
                out[e["name"]] = _from_int8(torch.from_numpy(q.copy()).reshape(shape[0], -1),
                                            torch.from_numpy(scale.copy()), shape)
            else:
                dtype = {"float16": np.float16, "float32": np.float32, "fp16": np.float16, "fp32": np.float32}[kind]
                arr = np.frombuffer(body, dtype=dtype, count=count, offset=e["offset"])
                out[e["name"]] = torch.from_numpy(arr.astype(np.float32)).reshape(shape)
        return out
    except (ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError) as exc:
        raise BitstreamError(f"section 'networks' is malformed ({exc})") from None


def quantised_copy(method, weights: str = "int8", position_bits: int = 16) -> tuple[object, bytes]:
    """(a copy of `method` with its lossy coding applied, the Draco bytes of its positions): network
    weights rounded to `weights`, anchor positions through Draco, attributes set to their rounded values
    and marked as decoded."""
    if weights not in WEIGHTS:
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    ref = copy.deepcopy(method).cpu().eval()
    with torch.no_grad():
        state = ref.state_dict()
        for name, t in _network_state(ref).items():
            state[name] = _as_stored(t, weights)
        ref.load_state_dict(state)
        pos = encode_positions(ref.field.anchors.numpy(), bits=position_bits)
        ref.field.anchors.copy_(torch.from_numpy(decode_positions(pos, len(ref.field))))
        if ref.field.temporal:
            for p in ref.field.temporal_rows():
                p.copy_(p.half().float())
    return ref, pos


def _pack_temporal(field) -> bytes:
    return torch.cat([t.reshape(-1) for t in field.temporal_rows()]).detach().cpu().half().numpy().tobytes()


def _unpack_temporal(payload: bytes, anchors: int, velocity: bool, source: str) -> tuple[Tensor, ...]:
    per_anchor = 10 if velocity else 4
    if len(payload) != per_anchor * anchors:
        raise BitstreamError(f"{source}: section 'temporal' holds {len(payload)} bytes, expected "
                             f"{per_anchor * anchors}")
    values = torch.from_numpy(np.frombuffer(payload, dtype=np.float16).astype(np.float32))
    out = (values[:anchors], values[anchors : 2 * anchors])
    return out + (values[2 * anchors :].reshape(anchors, 3),) if velocity else out


def encode(method, config: dict, step: int, weights: str = "int8", position_bits: int = 16) -> tuple[bytes, object, dict]:
    """(bitstream bytes, the reference model it decodes to, a report of bytes and estimated bits per section)."""
    from splat4d.train.checkpoint import to_plain

    t0 = time.perf_counter()
    ref, positions = quantised_copy(method, weights, position_bits)
    # copies: set_decoded_attributes below overwrites the parameters, and the estimate must be of the coding
    # done here (the hyperprior of the unrounded f_v), not of one from the rounded values (that differed
    # by 5 % for f_v at lambda_e 1e-2 on D-NeRF)
    a = {k: v.detach().clone() for k, v in ref.coded_attributes().items()}
    payloads, coded = ref.entropy.compress(a["f_v"], a["f_g"], a["cov"], a["col"])
    ref.set_decoded_attributes({k: v.float() for k, v in coded.items()})
    _, est = _estimated_section_bits(ref, a)
    header = {
        "format": FORMAT, "config": to_plain(config), "step": int(step), "anchors": len(ref.field),
        "time_rows": int(ref.field.time_table.frames), "extent": float(ref.extent), "voxel": float(ref.voxel),
        "grow_threshold": float(ref.grow_threshold), "stages": [int(ref.warmup_iters), int(ref.quantise_iters),
                                                                int(ref.rate_iters)],
        "weights": weights, "position_bits": position_bits, "container_version": FORMAT_VERSION,
        "temporal": bool(ref.field.temporal), "velocity": bool(ref.field.velocity),
    }
    # the networks are packed from the model itself: int8 rows of ref's already rounded weights could get a
    # scale one ulp off, and the decoder must read back exactly ref's weights
    sections = {"header": json.dumps(header).encode(), "networks": _pack_tensors(_network_state(method), weights),
                "positions": positions, **payloads}
    if ref.field.temporal:
        sections["temporal"] = _pack_temporal(ref.field)
    data = pack(sections)
    report = {"sections": {k: {"bytes": len(v), "estimated_bits": est.get(k)} for k, v in sections.items()},
              "total_bytes": len(data), "encode_seconds": time.perf_counter() - t0}
    return data, ref, report


def _estimated_section_bits(ref, a: dict[str, Tensor]) -> tuple[dict, dict[str, float]]:
    """Estimated bits of every entropy-coded section (the entropy model's rate, float64 as coded)."""
    model = copy.deepcopy(ref.entropy).double().cpu()
    with torch.no_grad():
        out, bits = model(*(a[k].double() for k in ("f_v", "f_g", "cov", "col")), mode="round")
        est = {k: float(v.sum()) for k, v in bits.items() if k != "f_g"}
        chunks = model.chunk_params(out["f_v"], out["f_g"])
        for m, ((mean, scale, q), x) in enumerate(zip(chunks, out["f_g"].chunk(model.dims.chunks, dim=-1))):
            from splat4d.codec.entropy import gaussian_bits

            est[f"f_g.{m}"] = float(gaussian_bits(torch.round(x / q), mean / q, scale / q).sum())
    return out, est


def decode(data: bytes, source: str = "bitstream"):
    """(method in eval mode, config dict, iteration) of a bitstream; BitstreamError naming what is wrong."""
    from splat4d.methods.base import get_method
    from splat4d.train.checkpoint import from_plain

    _, sections = unpack(data, source)
    for name in ("header", "networks", "positions", *ATTRIBUTE_SECTIONS):
        if name not in sections:
            raise BitstreamError(f"{source} lacks section {name!r}")
    try:
        header = json.loads(sections["header"])
        if header.get("format") != FORMAT:
            raise BitstreamError(f"{source} holds {header.get('format')!r}, not an {FORMAT} bitstream")
        config = header["config"]
        cls = get_method("adcgs")
        cfg = from_plain(cls.Config, config["method_config"], "method")
        cfg.temporal_opacity = bool(header.get("temporal", False))  # absent: written before it existed
        cfg.anchor_velocity = bool(header.get("velocity", False))
        A, rows = int(header["anchors"]), int(header["time_rows"])
    except (KeyError, TypeError, ValueError) as e:
        raise BitstreamError(f"{source}: section 'header' is malformed ({e})") from None
    except ConfigError as e:
        raise BitstreamError(f"{source}: section 'header' holds an invalid config ({e})") from None
    if cfg.temporal_opacity and "temporal" not in sections:
        raise BitstreamError(f"{source} lacks section 'temporal'")
    nets = _unpack_tensors(sections["networks"])
    method = cls.empty_with(cfg, A, rows, header["extent"], header["voxel"], header["grow_threshold"])
    state = method.state_dict()
    for name, t in nets.items():
        if name not in state or state[name].shape != t.shape:
            raise BitstreamError(f"{source}: section 'networks' holds an unexpected tensor {name!r}")
        state[name] = t.to(state[name].dtype)
    method.load_state_dict(state)
    with torch.no_grad():
        method.field.anchors.copy_(torch.from_numpy(decode_positions(sections["positions"], A)))
        decoded = method.entropy.decompress(sections, A)
        method.set_decoded_attributes({k: v.float() for k, v in decoded.items()})
        if cfg.temporal_opacity:
            for p, v in zip(method.field.temporal_rows(),
                            _unpack_temporal(sections["temporal"], A, cfg.anchor_velocity, source)):
                p.copy_(v)
        for buf, v in zip((method.warmup_iters, method.quantise_iters, method.rate_iters), header["stages"]):
            buf.fill_(int(v))
        method.step.fill_(int(header["step"]))
    return method.eval(), config, int(header["step"])
