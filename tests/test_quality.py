"""The quality margins docs/benchmarks.md reports, as the `slow` tier (`make test-all`, ~50 min on 2 cores):
each test runs the quality benchmark (splat4d.bench.quality), writes benchmarks/results/quality_<scene>.json
exactly as `python benchmarks/quality.py --scene <scene>` does (the files the docs quote), and
fails when deformable no longer beats static by the reported margin, or either falls below its floor.
Floors sit ~1 dB under the measured values (seed and thread-count noise is a few tenths of a dB)."""

from pathlib import Path

import pytest

from splat4d.bench.quality import QualityBench, available, run

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks/results"  # the JSON the docs quote

# scene -> (min deformable - static dB, min deformable PSNR, min static PSNR); measured in docs/benchmarks.md.
# All at 3000 iterations with default settings; the two monocular scenes hold issue 13's target (+2 dB).
MARGINS = {
    "synthetic:default": (3.5, 25.6, 20.5),  # measured +5.19: 26.69 vs 21.50
    "synthetic:fast": (2.0, 25.0, 22.5),  # measured +2.51: 25.96 vs 23.45
    "dnerf": (2.0, 28.5, 17.2),  # measured +11.58: 29.74 vs 18.16
}


@pytest.mark.slow
@pytest.mark.parametrize("scene", list(MARGINS))
def test_deformable_beats_static_by_the_reported_margin(scene):
    ok, why = available(scene)
    if not ok:
        pytest.skip(why)
    result = run(QualityBench(scene=scene, out=RESULTS), progress=False)
    by = {r["method"]: r for r in result["rows"]}
    margin, floor_deformable, floor_static = MARGINS[scene]
    assert by["deformable"]["psnr"] >= floor_deformable, by["deformable"]
    assert by["static"]["psnr"] >= floor_static, by["static"]
    assert result["margins"]["deformable_minus_static_psnr"] >= margin, result["margins"]
