"""Every bad value is refused with one line and exit 2 (issue 7): flags and config.yaml values of the
wrong type or out of range, unwritable output folders, unknown devices, and checkpoints with missing,
mistyped or pickled entries. A refused command writes nothing: the output folder is not even created.

Most cases run in-process through `splat4d.cli.main`; a few run the installed script to see what a shell
sees (no traceback). The property test throws random values at `from_plain` for every config class.
"""

import dataclasses
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ENV, SPLAT4D
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splat4d import config_checks as cc
from splat4d.cli import main
from splat4d.cli_parse import condense
from splat4d.errors import CheckpointError, ConfigError
from splat4d.methods.deformable import DeformableConfig
from splat4d.methods.static import StaticConfig
from splat4d.train.checkpoint import from_plain, load_checkpoint
from splat4d.train.densify import DensifyConfig
from splat4d.train.run import DataConfig, fit
from splat4d.train.trainer import TrainConfig

TINY = ["--data", "synthetic:tiny", "--device", "cpu", "--method.sh-degree", "0"]


pytestmark = pytest.mark.usefixtures("one_thread", "no_lpips_weights")


def _error_line(stderr: str) -> str:
    """The one `splat4d: error: ...` line, after checking there is no traceback and nothing else."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("splat4d: error: "), stderr
    return lines[0]


def _refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return _error_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-iteration static run on synthetic:tiny."""
    out = tmp_path_factory.mktemp("val") / "run"
    fit("static", StaticConfig(sh_degree=0), DataConfig("synthetic:tiny"),
        TrainConfig(iters=2, save_every=0, device="cpu"), out, progress=False)
    return out


# ----------------------------------------------------------------------------- the checks themselves
@pytest.mark.parametrize("call, message", [
    (lambda: cc.check_int("train.iters", 0, 1), "train.iters must be an integer >= 1, got 0"),
    (lambda: cc.check_int("train.iters", True, 1), "train.iters must be an integer >= 1, got True"),
    (lambda: cc.check_int("train.iters", "abc", 1), "train.iters must be an integer >= 1, got 'abc'"),
    (lambda: cc.check_int("train.iters", 2.0, 1), "train.iters must be an integer >= 1, got 2.0"),
    (lambda: cc.check_int("method.sh_degree", 4, 0, 3), "method.sh_degree must be an integer in [0, 3], got 4"),
    (lambda: cc.check_float("method.init_opacity", 1.5, 0, 1, lo_open=True, hi_open=True),
     "method.init_opacity must be a finite number in (0, 1), got 1.5"),
    (lambda: cc.check_float("data.scale", math.nan, 0, lo_open=True), "data.scale must be a finite number > 0, got nan"),
    (lambda: cc.check_float("data.scale", math.inf, 0, lo_open=True), "data.scale must be a finite number > 0, got inf"),
    (lambda: cc.check_float("x", False, 0), "x must be a finite number >= 0, got False"),
    (lambda: cc.check_device("train.device", "gpu"), "train.device must be one of auto, cpu, cuda, cuda:N, got 'gpu'"),
    (lambda: cc.check_choice("method.backend", "gl", ("auto", "cpu")), "method.backend must be one of auto, cpu, got 'gl'"),
    (lambda: cc.check_ints("method.grid_resolution", (4, 0, 4), 1, length=3),
     "method.grid_resolution must be 3 integers >= 1, got (4, 0, 4)"),
    (lambda: cc.check_floats("--times", (0.5, 1.5), 0, 1), "--times must be one or more finite numbers in [0, 1], got (0.5, 1.5)"),
])
def test_check_messages(call, message):
    with pytest.raises(ConfigError) as e:
        call()
    assert str(e.value) == message


def test_checks_pass_good_values():
    assert cc.check_int("a", 3, 1, 3) == 3
    assert cc.check_float("b", 1, 0, 1) == 1.0
    assert cc.check_device("c", "cuda:1") == "cuda:1"
    assert cc.check_floats("d", [0, 1.0], 0, 1) == (0.0, 1.0)
    assert cc.check_background("e", "1,0.5,0") == "1,0.5,0"


def test_condense_joins_a_wrapped_box():
    box = ("╭─ Invalid choice ──────────╮\n│ invalid choice 'x' for    │\n│ argument '--path'.        │\n"
           "│ ───────────────────────── │\n│ For full helptext, run... │\n╰───────────────────────────╯\n")
    assert condense(box, "splat4d render") == "invalid choice 'x' for argument '--path'. (see splat4d render --help)"
    assert condense("usage: p\np: error: argument --n: invalid int value: 'a'\n", "p") == \
        "argument --n: invalid int value: 'a' (see p --help)"


def test_default_configs_are_valid():
    for cfg in (TrainConfig(), DataConfig(), DensifyConfig(), StaticConfig(), DeformableConfig()):
        cfg.validate()


# ----------------------------------------------------------------------------- fit flags
@pytest.mark.parametrize("flags, names", [
    (["--iters", "abc"], ["--iters", "integer", "'abc'"]),
    (["--iters", "1.5"], ["--iters", "integer"]),
    (["--iters", "0"], ["train.iters", ">= 1", "got 0"]),
    (["--batch-size", "0"], ["train.batch_size", ">= 1"]),
    (["--seed", "-5"], ["train.seed", "got -5"]),
    (["--device", "gpu"], ["train.device", "auto, cpu, cuda, cuda:N", "'gpu'"]),
    (["--scale", "nan"], ["data.scale", "> 0", "nan"]),
    (["--scale", "inf"], ["data.scale", "inf"]),
    (["--scale=-2"], ["data.scale", "got -2.0"]),
    (["--scale", "0"], ["data.scale", "> 0"]),
    (["--background", "purple"], ["data.background", "'purple'"]),
    (["--format", "blender"], ["data.format", "dnerf", "'blender'"]),
    (["--method.init-opacity", "1.5"], ["method.init_opacity", "(0, 1)", "1.5"]),
    (["--method.init-opacity", "0"], ["method.init_opacity", "(0, 1)"]),
    (["--method.sh-degree", "4"], ["method.sh_degree", "[0, 3]", "got 4"]),
    (["--method.lr-means", "-1e-3"], ["method.lr_means", "> 0"]),
    (["--method.lr-opacity", "nan"], ["method.lr_opacity", "nan"]),
    (["--method.lambda-ssim", "1.2"], ["method.lambda_ssim", "[0, 1]"]),
    (["--method.backend", "opengl"], ["method.backend", "auto, cpu, torch, cuda"]),
    (["--method.densify.every", "0"], ["method.densify.every", ">= 1"]),
    (["--method.densify.max-gaussians", "-1"], ["method.densify.max_gaussians"]),
    (["--method.densify.prune-opacity", "0.7"], ["method.densify.prune_opacity", "[0, 0.5)"]),
    (["--method.bogus", "3"], ["Unrecognized options", "--method.bogus"]),
])
def test_fit_bad_flag_is_one_line_and_writes_nothing(capsys, tmp_path, flags, names):
    out = tmp_path / "run"
    line = _refused(capsys, ["fit", "static", *TINY, "--iters", "2", *flags, "--out", str(out)])
    for n in names:
        assert n in line, line
    assert not out.exists()


@pytest.mark.parametrize("method, flags, names", [
    ("deformable", ["--method.grid-resolution", "0", "8", "8"], ["method.grid_resolution", "3 integers >= 1"]),
    ("deformable", ["--method.grid-resolution", "8", "8"], ["--method.grid-resolution", "3 values"]),
    ("deformable", ["--method.multires"], ["method.multires", "one or more integers"]),
    ("deformable", ["--method.multires", "1", "-2"], ["method.multires", ">= 1"]),
    ("deformable", ["--method.coarse-fraction", "1"], ["method.coarse_fraction", "[0, 1)"]),
    ("deformable", ["--method.time-resolution", "-1"], ["method.time_resolution", ">= 0"]),
    ("deformable", ["--method.width", "0"], ["method.width", ">= 1"]),
    ("deformable", ["--method.lr-grid", "inf"], ["method.lr_grid", "inf"]),
    ("deformable", ["--method.time-l1-weight", "-1"], ["method.time_l1_weight", ">= 0"]),
    ("deformable", ["--method.lambda-background", "-0.1"], ["method.lambda_background", ">= 0"]),
    ("fourk4d", ["--method.lr-background", "-1"], ["method.lr_background", ">= 0"]),
    ("fourk4d", ["--method.radius-min", "2", "--method.radius-max", "1"], ["method.radius_max"]),
    ("fourk4d", ["--method.hull-from", "depth"], ["method.hull_from", "'depth'"]),
    ("fourk4d", ["--method.source-views", "0"], ["method.source_views", ">= 1"]),
    ("fourk4d", ["--method.sh-degree", "4"], ["method.sh_degree", "[0, 3]"]),
    ("fourk4d", ["--method.background-points", "-5"], ["method.background_points", ">= 0"]),
])
def test_fit_method_bad_flag(capsys, tmp_path, method, flags, names):
    out = tmp_path / "run"
    line = _refused(capsys, ["fit", method, *TINY, *flags, "--out", str(out)])
    for n in names:
        assert n in line, line
    assert not out.exists()


def test_help_still_prints_and_exits_0(capsys):
    for argv in (["fit", "static", "--help"], ["render", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert "usage:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- output folders
def _unwritable_cases(tmp_path: Path) -> list[Path]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [Path("/proc/splat4d_x"), a_file, a_file / "sub"]
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        cases.append(ro / "run")
    return cases


def test_fit_unwritable_out_is_refused_before_training(capsys, tmp_path):
    for out in _unwritable_cases(tmp_path):
        line = _refused(capsys, ["fit", "static", *TINY, "--iters", "2", "--out", str(out)])
        assert "--out" in line and str(out) in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) in (["a_file"], ["a_file", "ro"])


def test_probe_leaves_nothing_behind(tmp_path):
    cc.check_output_dir("--out", tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, names", [
    (["render", "RUN", "--frames", "0"], ["--frames", ">= 1", "got 0"]),
    (["render", "RUN", "--fps", "0"], ["--fps", "[1, 1000]"]),
    (["render", "RUN", "--time", "1.5"], ["--time", "[0, 1]", "1.5"]),
    (["render", "RUN", "--time", "nan"], ["--time", "nan"]),
    (["render", "RUN", "--frames", "ten"], ["--frames", "integer", "'ten'"]),
    (["render", "RUN", "--out", "/proc/splat4d_x/v.mp4"], ["--out", "/proc/splat4d_x/v.mp4"]),
    (["render", "RUN", "--path", "zigzag"], ["'zigzag'", "--path"]),
    (["render", "RUN", "--out", "video"], ["--out", "video", ".mp4"]),
    (["export", "RUN", "--frames", "-1"], ["--frames", ">= 0"]),
    (["export", "RUN", "--times", "0", "1.5"], ["--times", "[0, 1]"]),
    (["export", "RUN", "--times", "-0.1"], ["--times", "[0, 1]"]),
    (["export", "RUN", "--out", "/proc/splat4d_x"], ["--out", "not a writable folder"]),
    (["eval", "RUN", "--scale", "-1e-3"], ["--scale"]),
    (["eval", "RUN", "--out", "/proc/splat4d_x"], ["--out", "/proc/splat4d_x"]),
    (["eval", "RUN", "--split", "holdout"], ["--split", "train, val, test"]),
    (["info", "synthetic", "--scale", "0"], ["--scale", "> 0"]),
    (["synth", "huge"], ["NAME", "default, tiny, large"]),
    (["demo", "--iters", "0"], ["--iters", ">= 1"]),
    (["demo", "--method", "nerf"], ["--method", "deformable", "static", "fourk4d"]),
    (["bench", "raster", "--repeats", "0"], ["--repeats", ">= 1"]),
    (["bench", "raster", "--resolutions", "0"], ["--resolutions", "[1, 8192]"]),
])
def test_other_commands_refuse_bad_values(capsys, tmp_path, argv, names):
    argv = [str(tmp_path / "run") if a == "RUN" else a for a in argv]
    line = _refused(capsys, argv)
    for n in names:
        assert n in line, line
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- config.yaml
@pytest.mark.parametrize("section, key, value, names", [
    ("train", "iters", "abc", ["train.iters", "'abc'"]),
    ("train", "iters", "1e3", ["train.iters", "'1e3'"]),  # YAML 1.1 reads 1e3 (no dot) as a string
    ("train", "iters", 2.5, ["train.iters", "2.5"]),
    ("train", "iters", True, ["train.iters", "True"]),
    ("train", "device", "gpu", ["train.device", "'gpu'"]),
    ("train", "bogus", 1, ["unknown TrainConfig option", "bogus"]),
    ("data", "scale", float("nan"), ["data.scale", "nan"]),
    ("data", "background", [1, 2], ["data.background"]),
    ("method_config", "init_opacity", 1.5, ["method_config.init_opacity", "(0, 1)"]),
    ("method_config", "sh_degree", None, ["method_config.sh_degree", "None"]),
    ("method_config", "densify", 5, ["method_config.densify", "mapping"]),
    ("method_config", "densify", {"every": 0}, ["method_config.densify.every", ">= 1"]),
])
def test_config_yaml_bad_value(capsys, tmp_path, section, key, value, names):
    cfg = {"method": "static", "data": {"path": "synthetic:tiny"}, "train": {"iters": 2, "device": "cpu"},
           "method_config": {"sh_degree": 0}}
    cfg[section][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    line = _refused(capsys, ["fit", "static", "--config", str(path), "--out", str(out)])
    assert str(path) in line
    for n in names:
        assert n in line, line
    assert not out.exists()


def test_config_yaml_integral_float_is_taken_as_int():
    assert from_plain(TrainConfig, {"iters": 1000.0}).iters == 1000
    assert from_plain(DeformableConfig, {"grid_resolution": [8.0, 8, 8]}).grid_resolution == (8, 8, 8)


def test_python_fit_refuses_bad_values_before_writing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="method.init_opacity"):
        fit("static", StaticConfig(init_opacity=0.0), DataConfig("synthetic:tiny"), TrainConfig(iters=2), out)
    with pytest.raises(ConfigError, match="train.iters"):
        fit("static", StaticConfig(), DataConfig("synthetic:tiny"), TrainConfig(iters=-1), out)
    with pytest.raises(ConfigError, match="takes a StaticConfig"):
        fit("static", DeformableConfig(), DataConfig("synthetic:tiny"), TrainConfig(iters=2), out)
    assert not out.exists()


# ----------------------------------------------------------------------------- property test
VALUES = st.one_of(
    st.integers(-10, 10), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1), st.booleans(), st.none(), st.text(max_size=8),
    st.sampled_from(["auto", "cpu", "cuda:0", "black", "1,1,1", "synthetic:tiny", "cpu ", "nan", "3"]),
    st.lists(st.one_of(st.integers(-2, 70), st.floats(-1, 2), st.text(max_size=2)), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
CLASSES = [TrainConfig, DataConfig, DensifyConfig, StaticConfig, DeformableConfig]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_plain_only_ever_raises_config_error(cls):
    names = [f.name for f in dataclasses.fields(cls)] + ["not_a_field"]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(names), VALUES, max_size=4))
    def check(data):
        try:
            cfg = from_plain(cls, data)
        except ConfigError as e:
            assert "\n" not in str(e)
            return
        cfg.validate()  # what from_plain returns is valid

    check()


# ----------------------------------------------------------------------------- checkpoints
class Stranger:
    """What a stranger's checkpoint may hold: unpickling it would run code (create a folder)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _tampered_run(run: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    (dst / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst / "checkpoint.pt")
    return dst


def _pop(key):
    return lambda c: c.pop(key)


def _set(key, value):
    return lambda c: c.__setitem__(key, value)


def test_checkpoint_loads_with_weights_only_and_holds_plain_config(run):
    ckpt = load_checkpoint(run, "static")
    assert ckpt["version"] == 2 and ckpt["config"]["train"]["iters"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text()) == ckpt["config"]


@pytest.mark.parametrize("edit, names", [
    (_pop("model"), ["lacks entry model"]),
    (_pop("step"), ["lacks entry step"]),
    (_pop("optimizer"), ["lacks entry optimizer"]),
    (_set("step", "12"), ["'step'", "integer >= 0", "str"]),
    (_set("step", -3), ["'step'", "integer >= 0"]),
    (_set("model", {"gaussians.means": [1.0, 2.0]}), ["'model'", "tensors"]),
    (_set("model", [torch.zeros(3)]), ["'model'", "list"]),
    (_set("order", "abc"), ["'order'"]),
    (_set("sampler", torch.zeros(3)), ["'sampler'", "uint8"]),
    (_set("extra", {"densify": 5}), ["does not fit method 'static'"]),
    (_set("version", 1), ["version 1", "reads 2"]),
])
def test_bad_checkpoint_entry_is_one_line(run, tmp_path, capsys, edit, names):
    bad = _tampered_run(run, tmp_path / "bad", edit)
    line = _refused(capsys, ["eval", str(bad)])
    for n in names:
        assert n in line, line
    assert not (bad / "eval").exists() and not (bad / "metrics.json").exists()


@pytest.mark.parametrize("what, names", [
    ("stranger", ["pickled Python object", "posix.mkdir", "never runs code"]),
    ("old", ["pickled Python object", "splat4d.train.run.DataConfig", "older splat4d"]),
])
def test_pickled_objects_are_refused_unrun(run, tmp_path, capsys, what, names):
    marker = tmp_path / "code_ran"
    value = Stranger(str(marker)) if what == "stranger" else {"data": DataConfig()}
    bad = _tampered_run(run, tmp_path / "bad", _set("config", value))
    line = _refused(capsys, ["eval", str(bad)])
    for n in names:
        assert n in line, line
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_resume_from_mistyped_checkpoint_is_one_line(run, tmp_path, capsys):
    bad = _tampered_run(run, tmp_path / "bad", _set("step", 1.5))
    line = _refused(capsys, ["fit", "static", "--out", str(bad), "--resume", "--iters", "3"])
    assert "'step'" in line
    assert sorted(p.name for p in bad.iterdir()) == ["checkpoint.pt", "config.yaml"]


# ----------------------------------------------------------------------------- what a shell sees
def test_script_prints_one_line_and_exit_2(run, tmp_path):
    bad = _tampered_run(run, tmp_path / "bad", _set("config", Stranger(str(tmp_path / "code_ran"))))
    for argv in (["fit", "static", "--iters", "abc", "--out", str(tmp_path / "r")], ["eval", str(bad)]):
        r = subprocess.run(SPLAT4D + argv, capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 2, r.stderr
        _error_line(r.stderr)
    assert not (tmp_path / "r").exists() and not (tmp_path / "code_ran").exists()


def test_eval_of_run_with_bad_config_yaml_names_it(run, tmp_path, capsys):
    bad = _tampered_run(run, tmp_path / "bad", lambda c: None)
    cfg = yaml.safe_load((bad / "config.yaml").read_text())
    cfg["method_config"]["sh_degree"] = "three"
    (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
    line = _refused(capsys, ["eval", str(bad)])
    assert str(bad / "config.yaml") in line and "method_config.sh_degree" in line and "'three'" in line
