"""What `splat4d compress / decompress` do (the CLI parses, these work)."""

from __future__ import annotations

from pathlib import Path

from splat4d.codec.container import write_bitstream, unpack
from splat4d.errors import BitstreamError, ConfigError
from splat4d.metrics import BYTES_PER_MB
from splat4d.train.run import load_run


def compress_run(run: Path, out: Path, weights: str = "int8", position_bits: int = 16) -> dict:
    """Encode an adcgs run into `out` (atomically); prints bytes and estimated bits per section."""
    from splat4d.methods.adcgs import bitstream

    method, config, step = load_run(run, device="cpu")
    if config["method"] != "adcgs":
        raise ConfigError(f"compress codes adcgs runs; {run} is a {config['method']!r} run")
    data, _, report = bitstream.encode(method, config, step, weights, position_bits)
    _, sections = unpack(data)  # written as packed: the file is the container of these sections
    write_bitstream(out, sections)
    print(f"{'section':<12} {'bytes':>10} {'est. bytes':>11} {'written/est.':>13}")
    for name, sec in report["sections"].items():
        est = sec["estimated_bits"]
        ratio = f"{sec['bytes'] * 8 / est:13.4f}" if est else f"{'':>13}"
        est_text = f"{est / 8:11.0f}" if est else f"{'':>11}"
        print(f"{name:<12} {sec['bytes']:>10} {est_text} {ratio}")
    print(f"wrote {out}: {report['total_bytes']} bytes ({report['total_bytes'] / BYTES_PER_MB:.3f} MB), "
          f"encoded in {report['encode_seconds']:.2f} s")
    return report


def decompress_file(bitstream_path: Path, out: Path) -> Path:
    """Decode a bitstream into run folder `out` (config.yaml + checkpoint.pt). The bitstream is decoded
    completely before anything is written, and the folder appears whole (renamed from a temporary one)."""
    from splat4d.train.checkpoint import write_run_folder

    out = Path(out)
    if (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; choose another --out")
    if not Path(bitstream_path).is_file():
        raise BitstreamError(f"no bitstream at {bitstream_path}")
    method, config, step = load_run(bitstream_path, device="cpu")
    write_run_folder(out, method, config, step)
    print(f"decoded {bitstream_path} into {out} (adcgs, iteration {step}); eval, render and export read it")
    return out
