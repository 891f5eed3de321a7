"""--background auto: white for D-NeRF, black elsewhere, resolved once and recorded in config.yaml."""

import numpy as np
import pytest
import yaml
from data_builders import known_cameras, write_dnerf

from splat4d import config_checks as cc
from splat4d.cli import main
from splat4d.data import easyvolcap, load_scene, resolve_background
from splat4d.errors import ConfigError
from splat4d.methods.static import StaticConfig
from splat4d.train.checkpoint import from_plain
from splat4d.train.run import DataConfig, fit, resolved_data
from splat4d.train.trainer import TrainConfig


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def dnerf_dir(tmp_path):
    """A tiny RGBA D-NeRF capture (random images with alpha, so the background shows)."""
    root = tmp_path / "dnerf"
    write_dnerf(root, known_cameras(3), {"train": [(0, 0.0), (1, 0.5), (2, 1.0)], "test": [(0, 0.25)]}, channels=4)
    return root


def _composite(scene, bg):
    view = scene.split("train")[0]
    rgba = view.image.read().astype(np.float32) / 255
    return rgba[..., :3] * rgba[..., 3:] + np.float32(bg) * (1 - rgba[..., 3:]), scene.image(view).numpy()


def test_auto_is_white_for_dnerf_and_explicit_colours_stay(dnerf_dir):
    assert DataConfig().background == "auto"
    assert resolve_background("auto", dnerf_dir) == ("white", "D-NeRF default")
    assert resolve_background("auto", dnerf_dir / "transforms_train.json") == ("white", "D-NeRF default")
    assert resolve_background("black", dnerf_dir) == ("black", "given")
    scene = load_scene(dnerf_dir)  # the default is auto
    assert scene.background == (1.0, 1.0, 1.0)
    expect, got = _composite(scene, 1.0)
    np.testing.assert_allclose(got, expect, atol=1e-6)
    black = load_scene(dnerf_dir, background="black")
    assert black.background == (0.0, 0.0, 0.0)
    expect, got = _composite(black, 0.0)
    np.testing.assert_allclose(got, expect, atol=1e-6)
    assert load_scene(dnerf_dir, background=" AUTO ").background == (1.0, 1.0, 1.0)


def test_auto_is_black_for_synthetic_and_follows_a_recorded_easyvolcap_colour(dnerf_dir, tmp_path):
    assert resolve_background("auto", "synthetic:tiny") == ("black", "synthetic default")
    assert load_scene("synthetic:tiny").background == (0.0, 0.0, 0.0)
    # an EasyVolcap folder written from the D-NeRF scene keeps the white it was written with ...
    easyvolcap.write_easyvolcap(load_scene(dnerf_dir), tmp_path / "ev")
    assert resolve_background("auto", tmp_path / "ev") == ("white", "recorded in splat4d.json")
    # ... one written from a gray scene its gray, and one without splat4d.json is black
    easyvolcap.write_easyvolcap(load_scene("synthetic:tiny", background="0.25,0.5,0.75"), tmp_path / "ev2")
    colour, _ = resolve_background("auto", tmp_path / "ev2")
    assert load_scene(tmp_path / "ev2").background == pytest.approx((0.25, 0.5, 0.75))
    assert colour == "0.25,0.5,0.75"
    (tmp_path / "ev2" / "splat4d.json").unlink()
    assert resolve_background("auto", tmp_path / "ev2") == ("black", "EasyVolcap default")


def test_auto_is_a_legal_value_and_bad_colours_still_fail(dnerf_dir):
    assert cc.check_background("--background", "auto") == "auto"
    DataConfig(background="auto").validate()
    with pytest.raises(ConfigError, match="auto, black, white"):
        cc.check_background("--background", "automatic")
    with pytest.raises(ConfigError):
        load_scene(dnerf_dir, background="purple")
    # old config.yaml files with explicit colours keep working, unchanged by resolution
    old = from_plain(DataConfig, {"path": str(dnerf_dir), "scale": 1.0, "background": "black"}, "data")
    assert resolved_data(old) is old and old.background == "black"
    assert resolved_data(DataConfig(str(dnerf_dir))).background == "white"
    assert resolved_data(DataConfig("synthetic:tiny")).background == "black"


def test_fit_records_the_resolved_colour_and_repeats_from_config(dnerf_dir, tmp_path, capsys):
    out = tmp_path / "run"
    data = DataConfig(str(dnerf_dir))
    fit("static", StaticConfig(sh_degree=0, random_init_points=100), data,
        TrainConfig(iters=2, save_every=0, device="cpu"), out, progress=False)
    assert data.background == "auto"  # the caller's config is left as it was
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["background"] == "white"
    # --config repeats the run with the recorded colour; --background overrides it
    again = tmp_path / "again"
    assert main(["fit", "--config", str(out / "config.yaml"), "--out", str(again), "--iters", "2"]) == 0
    assert yaml.safe_load((again / "config.yaml").read_text())["data"]["background"] == "white"
    black = tmp_path / "black"
    assert main(["fit", "static", "--data", str(dnerf_dir), "--background", "black", "--iters", "2",
                 "--method.random-init-points", "100", "--out", str(black)]) == 0
    assert yaml.safe_load((black / "config.yaml").read_text())["data"]["background"] == "black"
    capsys.readouterr()


def test_info_prints_the_background_and_why(dnerf_dir, capsys):
    assert main(["info", str(dnerf_dir)]) == 0
    out = capsys.readouterr().out
    assert "  background   white (D-NeRF default; --background to change)" in out.splitlines()
    assert main(["info", str(dnerf_dir), "--background", "black"]) == 0
    assert "  background   black (set by --background)" in capsys.readouterr().out.splitlines()
    assert main(["info", "synthetic:tiny"]) == 0
    assert "  background   black (synthetic default; --background to change)" in capsys.readouterr().out.splitlines()
