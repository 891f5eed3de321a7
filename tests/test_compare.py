"""`splat4d compare`: fits two methods on the tiny synthetic scene, writes the four files, and its table
agrees with each run's own metrics.json."""

import json

import numpy as np
import pytest
from PIL import Image

from splat4d.cli import main
from splat4d.plots import _ticks

pytestmark = pytest.mark.usefixtures("one_thread", "no_lpips_weights")


def test_compare_two_methods_writes_table_grid_and_rd_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--data", "synthetic:tiny", "--methods", "static,deformable", "--iters", "6", "--out", str(out)]
    assert main(args) == 0
    for name in ("table.md", "table.json", "grid.png", "rd.png"):
        assert (out / name).stat().st_size > 0
    table = json.loads((out / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["static", "deformable"]
    for row in table["rows"]:
        own = json.loads((out / "runs" / row["method"] / "metrics.json").read_text())["test"]
        assert row["psnr"] == pytest.approx(own["psnr"], abs=1e-6)
        assert row["ssim"] == pytest.approx(own["ssim"], abs=1e-6)
        assert row["num_gaussians"] == own["num_gaussians"] and row["size_mb"] == pytest.approx(own["size_mb"])
        assert row["lpips"].startswith("unavailable") and row["fps"] > 0 and row["train_seconds"] > 0
        assert row["device"].startswith("cpu")
    md = (out / "table.md").read_text()
    assert "| static |" in md and "| deformable |" in md and "unavailable" in md
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[1] > 3 * 32 and grid.shape[0] > 32  # ground truth + two methods, at least one view
    assert np.asarray(Image.open(out / "rd.png")).std() > 0
    # a second call reuses the fits (nothing retrained) and scores a finished run given with --runs
    capsys.readouterr()
    again = ["compare", "--data", "synthetic:tiny", "--methods", "static", "--runs", str(out / "runs" / "deformable"),
             "--iters", "6", "--out", str(out)]
    assert main(again) == 0
    assert "reusing" in capsys.readouterr().out
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["static", "deformable"] and rows[1]["psnr"] == pytest.approx(
        table["rows"][1]["psnr"], abs=1e-6)


def test_compare_refuses_bad_input(tmp_path, capsys):
    assert main(["compare", "--methods", "nosuch", "--out", str(tmp_path / "a")]) == 2
    assert "--methods must be one of" in capsys.readouterr().err
    assert main(["compare", "--out", str(tmp_path / "b")]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["compare", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_ticks_cover_the_range():
    t = _ticks(0.0, 1.0)
    assert t[0] >= 0.0 and t[-1] <= 1.0 and 3 <= len(t) <= 6
    assert _ticks(-1.3, 1.1)[0] >= -1.3
