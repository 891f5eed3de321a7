"""The 4K4D benchmark end to end on a tiny scene: three rows, the baked one as good as the trained one,
timings and baked bytes in the JSON."""

import json

import pytest


def test_fourk4d_bench_writes_a_complete_table(tmp_path, capsys):
    from splat4d.bench.fourk4d import FourK4DBench, run

    result = run(FourK4DBench(scene="synthetic:tiny", iters=4, frames=2, out=tmp_path))
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["deformable", "fourk4d", "fourk4d baked"]
    assert rows[2]["psnr"] == pytest.approx(rows[1]["psnr"], abs=0.05)
    assert all(r["render_ms"] > 0 for r in rows) and rows[2]["baked_mb_per_frame"] > 0
    assert all(lo <= r["render_ms"] <= hi for r in rows for lo, hi in [r["render_ms_quartiles"]])
    assert rows[2]["speedup_vs_trained_paired"] > 0
    assert all(r["page_faults_per_frame"] >= 0 and r["system_ms_per_frame"] >= 0 for r in rows)
    assert set(rows[2]["split_ms"]) == {"colors_ms", "colors_torch_ms", "peel_ms"} and all(v > 0 for v in rows[2]["split_ms"].values())
    assert 0 <= rows[2]["max_abs_vs_trained"] <= 1e-3
    assert rows[2]["speedup_vs_trained"] == pytest.approx(rows[1]["render_ms"] / rows[2]["render_ms"])
    saved = json.loads((tmp_path / "fourk4d_synthetic_tiny.json").read_text())
    assert [r["method"] for r in saved["rows"]] == [r["method"] for r in rows]
    assert "x deformable" in capsys.readouterr().out
