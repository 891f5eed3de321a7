"""`splat4d compress / decompress`, and eval / render / export reading a .s4d: the round trip, and every
kind of bad input as one line and exit code 2 with nothing half-written."""

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splat4d.cli import main
from splat4d.methods.base import get_method
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig

pytest.importorskip("constriction")
pytest.importorskip("DracoPy")


@pytest.fixture(scope="module")
def adcgs_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adcgs") / "run"
    cfg = get_method("adcgs").Config(k=3, feature_dim=8, residual_dim=4, time_dim=8, time_feature_dim=8, pe_freqs=2,
                                     hidden=8, deform_hidden=8, max_init_anchors=80)
    fit("adcgs", cfg, DataConfig("synthetic:tiny"), TrainConfig(iters=16, save_every=0, device="cpu"), out,
        progress=False)
    return out


@pytest.fixture(scope="module")
def s4d(adcgs_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bits") / "scene.s4d"
    assert main(["compress", str(adcgs_run), "-o", str(path)]) == 0
    return path


def test_compress_decompress_eval_render_export(s4d, tmp_path, capsys):
    assert main(["decompress", str(s4d), "-o", str(tmp_path / "run2")]) == 0
    a, _, step_a = load_run(s4d, "cpu")
    b, _, step_b = load_run(tmp_path / "run2", "cpu")
    assert step_a == step_b == 16
    from splat4d.data import load_scene

    cam = load_scene("synthetic:tiny").cameras("test")[0]
    with torch.no_grad():
        assert torch.equal(a.render(cam, 0.3, torch.zeros(3)).rgb, b.render(cam, 0.3, torch.zeros(3)).rgb)
    assert main(["eval", str(s4d), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["test"]
    assert metrics["size_mb"] == s4d.stat().st_size / 1e6 < metrics["decoded_size_mb"]  # the file's bytes
    assert main(["eval", str(s4d), "--data", "synthetic:tiny", "--scale", "0.5", "--out", str(tmp_path / "ev2")]) == 0
    assert main(["render", str(s4d), "--frames", "3", "--out", str(tmp_path / "o.mp4")]) == 0
    assert main(["export", str(s4d), "--out", str(tmp_path / "f.ply")]) == 0
    assert (tmp_path / "o.mp4").is_file() and (tmp_path / "f.ply").is_file()


def _one_line_exit_2(argv, capsys, match: str):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("splat4d: error:") and "\n" not in err and "Traceback" not in err, err
    assert match in err, err


def test_bad_bitstreams_are_one_line_and_leave_no_output(s4d, tmp_path, capsys):
    data = s4d.read_bytes()
    cases = {"truncated.s4d": data[: len(data) // 2], "flipped.s4d": data[:200] + bytes([data[200] ^ 0xFF]) + data[201:],
             "magic.s4d": b"XXXX" + data[4:]}
    for name, blob in cases.items():
        bad = tmp_path / name
        bad.write_bytes(blob)
        out = tmp_path / f"out_{name}"
        _one_line_exit_2(["decompress", str(bad), "-o", str(out)], capsys, str(bad))
        assert not out.exists()
        _one_line_exit_2(["eval", str(bad), "--out", str(tmp_path / f"ev_{name}")], capsys, str(bad))
        assert not (tmp_path / f"ev_{name}").exists()
    _one_line_exit_2(["info", str(s4d)], capsys, "not a dataset")
    _one_line_exit_2(["fit", "static", "--data", str(s4d), "--out", str(tmp_path / "f")], capsys, "not a dataset")


def test_compress_refuses_other_methods_and_newer_versions(s4d, tmp_path, capsys):
    from splat4d.methods.deformable import DeformableConfig

    run = tmp_path / "def"
    fit("deformable", DeformableConfig(sh_degree=0, max_init_points=100, foreground_init_points=0, grid_resolution=(4, 4, 4),
                                       multires=(1,), grid_dim=4, width=8),
        DataConfig("synthetic:tiny"), TrainConfig(iters=2, save_every=0, device="cpu"), run, progress=False)
    _one_line_exit_2(["compress", str(run), "-o", str(tmp_path / "x.s4d")], capsys, "codes adcgs runs")
    assert not (tmp_path / "x.s4d").exists()
    from splat4d.codec import container

    _, sections = container.unpack(s4d.read_bytes())
    newer = tmp_path / "newer.s4d"
    newer.write_bytes(container.pack(sections, version=container.FORMAT_VERSION + 1))
    _one_line_exit_2(["eval", str(newer)], capsys, "newer than this splat4d reads")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_damage_to_a_real_bitstream_is_a_bitstream_error(s4d, data):
    from splat4d.errors import BitstreamError
    from splat4d.methods.adcgs.bitstream import decode

    original = s4d.read_bytes()
    blob = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    if bytes(blob) == original:  # two flips of one byte can cancel
        return
    with pytest.raises(BitstreamError):
        decode(bytes(blob))
