"""The quality-per-budget benchmark on a tiny scene: table, JSON, PNG, skipped scenes, resume; the chart."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splat4d.bench import budget
from splat4d.bench.budget import SCENES, BudgetBench, scene_setting
from splat4d.bench.chart import PALETTE, Line, Panel, figure, nice_ticks
from splat4d.cli_parse import parse
from splat4d.errors import ConfigError


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def count_fits(monkeypatch):
    calls = []
    real = budget.fit

    def counting(name, mcfg, data, train, out, **kw):
        calls.append((name, data.path, train.iters))
        return real(name, mcfg, data, train, out, **kw)

    monkeypatch.setattr(budget, "fit", counting)
    return calls


def _bench(tmp_path: Path, **kw) -> BudgetBench:
    return BudgetBench(**{"scenes": ("synthetic:tiny", "dnerf-scene3-collision"), "budgets": (5, 10),
                          "out": tmp_path / "results", "chart": tmp_path / "budget.png",
                          "shared": tmp_path / "no-shared-data", "device": "cpu", **kw})


def test_table_json_png_skip_and_resume(tmp_path, capsys, count_fits):
    cfg = _bench(tmp_path, note="pytest")
    data = budget.run(cfg, progress=False)
    out = capsys.readouterr().out
    assert len(count_fits) == 4 and {c[2] for c in count_fits} == {5, 10}

    # table: header, one line per (method, budget), the skipped scene with its reason
    lines = out.splitlines()
    head = lines.index(budget.HEADER)
    table = [ln.split() for ln in lines[head + 1:head + 5]]
    assert [(r[0], r[1], int(r[2])) for r in table] == [
        ("synthetic:tiny", m, b) for m in ("static", "deformable") for b in (5, 10)]
    assert any("dnerf-scene3-collision" in ln and "skipped" in ln and "not found" in ln for ln in lines)

    # JSON: rows with the metrics, the resolved background, the session record
    saved = json.loads((tmp_path / "results" / "budget.json").read_text())
    assert saved == data
    rows = saved["rows"]
    assert len(rows) == 4
    for r in rows:
        assert r["iterations"] == r["budget"] and r["background"] == "black" and r["scale"] == 1.0
        assert 5 < r["psnr"] < 40 and 0 < r["ssim"] <= 1 and r["num_gaussians"] > 0 and r["size_mb"] > 0
        assert 0 < r["train_minutes"] <= r["wall_minutes"] and r["session"] == 0
    assert "no-shared-data" in saved["skipped"]["dnerf-scene3-collision"]
    (session,) = saved["meta"]["sessions"]
    assert session["note"] == "pytest" and session["torch_threads"] == 1 and session["numba_threads"] >= 1
    assert "cores" in session["machine"] and "load_avg_1min_at_end" in session
    assert not (tmp_path / "results" / "budget").exists() or not any((tmp_path / "results" / "budget").iterdir())

    # PNG: one row of two panels for the one scene that ran, both method colours drawn
    img = np.asarray(Image.open(tmp_path / "budget.png").convert("RGB"))
    assert img.shape[1] == 2 * 460 and img.shape[0] > 300
    for colour in PALETTE[:2]:
        assert (np.abs(img.astype(int) - colour).sum(-1) < 30).sum() > 50, colour

    # resume: the combinations already in the JSON are kept, only the new budget is fitted
    count_fits.clear()
    again = budget.run(_bench(tmp_path, methods=("static",), budgets=(5, 10, 3), resume=True), progress=False)
    assert count_fits == [("static", "synthetic:tiny", 3)]
    assert len(again["rows"]) == 5 and len(again["meta"]["sessions"]) == 2
    assert [r for r in again["rows"] if r["session"] == 0] == rows  # untouched
    assert "keep synthetic:tiny static 5" in capsys.readouterr().out

    # without --resume a combination is fitted again and its row replaced, other rows kept
    count_fits.clear()
    third = budget.run(_bench(tmp_path, methods=("static",), budgets=(3,)), progress=False)
    assert count_fits == [("static", "synthetic:tiny", 3)]
    assert len(third["rows"]) == 5 and sum(r["budget"] == 3 for r in third["rows"]) == 1
    assert next(r for r in third["rows"] if r["budget"] == 3)["session"] == 2


def test_scene_settings_and_flag_errors(tmp_path):
    assert scene_setting("synthetic:fast") == ("synthetic:fast", 1.0)
    assert scene_setting("dnerf-scene3-collision", tmp_path) == (str(tmp_path / "dnerf-scene3-collision"), 0.25)
    assert scene_setting("mujoco-toss-12cam", tmp_path)[1] == 1.0
    assert scene_setting("some/capture@0.5") == ("some/capture", 0.5)
    assert set(SCENES) == {"dnerf-scene3-collision", "synthetic:fast", "mujoco-toss-12cam"}
    assert BudgetBench().budgets == (1000, 3000, 6000) and BudgetBench().methods == ("static", "deformable")
    assert budget.missing("synthetic:fast") is None
    with pytest.raises(ConfigError, match="scale"):
        scene_setting("some/capture@big")
    with pytest.raises(ConfigError, match="--methods"):
        parse(BudgetBench, ["--methods", "nerf"], prog="budget")
    with pytest.raises(ConfigError, match="--budgets"):
        parse(BudgetBench, ["--budgets", "0"], prog="budget")
    cfg = parse(BudgetBench, ["--scenes", "synthetic:tiny", "--budgets", "5", "10", "--resume", "--note", "x"],
                prog="budget")
    assert cfg.scenes == ("synthetic:tiny",) and cfg.budgets == (5, 10) and cfg.resume and cfg.note == "x"


def test_nice_ticks_known_answers():
    assert nice_ticks(0, 6000) == [0, 2000, 4000, 6000]
    assert nice_ticks(18.3, 24.9) == [18, 20, 22, 24, 26]
    assert nice_ticks(0, 0.37) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert nice_ticks(0, 137) == [0, 50, 100, 150]
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(20.0, 20.0)  # one value: a window around it
    assert ticks[0] < 20 < ticks[-1]
    with pytest.raises(ValueError):
        nice_ticks(0, float("nan"))


def test_figure_layout_and_empty_panel():
    lines = [Line("a", [0, 1, 2], [1.0, 2.0, 1.5]), Line("b", [0, 2], [1.2, 1.8])]
    img = figure([[Panel("p", "x", "y", lines), Panel("q", "x", "y")]], title="t", panel_size=(300, 200))
    assert img.size[0] == 600 and img.size[1] > 200
    px = np.asarray(img).astype(int)
    for colour in PALETTE[:2]:  # each line drawn in its legend colour
        assert (np.abs(px - colour).sum(-1) < 30).sum() > 20
    right = px[:, 300:]  # the empty panel holds no line colour
    assert (np.abs(right - PALETTE[0]).sum(-1) < 30).sum() == 0
