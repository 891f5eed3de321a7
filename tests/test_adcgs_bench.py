"""The ADC-GS benchmark end to end on a tiny scene: rows, ratios, coding efficiency and timings in the JSON."""

import json

import pytest

pytest.importorskip("constriction")


def test_adcgs_bench_writes_a_complete_table(tmp_path, capsys):
    from splat4d.bench.adcgs import ADCGSBench, run

    result = run(ADCGSBench(scene="synthetic:tiny", iters=6, lambdas=(1e-3,), out=tmp_path))
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["deformable", "adcgs"]
    adc = rows[1]
    assert adc["bytes"] == (tmp_path / "adcgs" / "synthetic_tiny_adcgs_0.001.s4d").stat().st_size
    assert adc["size_ratio"] == pytest.approx(rows[0]["bytes"] / adc["bytes"])
    assert adc["deform_ms"] > 0 and adc["raster_ms"] > 0 and adc["gaussians_drawn"] > 0
    assert {"f_v", "cov", "col"} <= set(adc["written_over_estimated"])
    saved = json.loads((tmp_path / "adcgs_synthetic_tiny.json").read_text())
    assert saved["rows"][1]["lambda_e"] == 1e-3
    assert "x smaller" in capsys.readouterr().out


def test_speed_only_times_both_methods_at_the_asked_counts(tmp_path):
    import json

    from splat4d.bench.adcgs import ADCGSBench, run

    result = run(ADCGSBench(scene="synthetic:tiny", speed_only=True, counts=(300,), out=tmp_path))
    row = result["rows"][0]
    assert row["deformable_gaussians"] == 300 and row["adcgs_gaussians"] == 300
    assert row["deformable_deform_ms"] > 0 and row["adcgs_deform_ms"] > 0
    assert json.loads((tmp_path / "adcgs_speed_synthetic_tiny.json").read_text())["rows"] == result["rows"]


def test_several_seeds_give_the_mean_and_keep_each(tmp_path):
    from splat4d.bench.adcgs import ADCGSBench, run

    result = run(ADCGSBench(scene="synthetic:tiny", iters=4, lambdas=(1e-3,), seeds=(0, 1), out=tmp_path))
    for row in result["rows"]:
        assert len(row["psnr_seeds"]) == 2
        assert row["psnr"] == pytest.approx(sum(row["psnr_seeds"]) / 2)
    base, adc = result["rows"]
    assert adc["psnr_minus_deformable_seeds"] == pytest.approx([a - b for a, b in zip(adc["psnr_seeds"], base["psnr_seeds"])])
    assert (tmp_path / "adcgs" / "synthetic_tiny_adcgs_0.001_s1.s4d").is_file()
    assert (tmp_path / "adcgs_synthetic_tiny_seeds0-1.json").is_file()


def test_no_seeds_is_refused():
    from splat4d.bench.adcgs import ADCGSBench
    from splat4d.errors import ConfigError

    with pytest.raises(ConfigError, match="--seeds"):
        ADCGSBench(seeds=()).validate()
