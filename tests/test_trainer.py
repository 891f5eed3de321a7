"""The Trainer and run folders: an interrupted-and-resumed run equals an uninterrupted one bit for bit
(densification included), the NaN guard, SIGINT/SIGTERM checkpoint-and-exit, checkpoint and run-folder
errors as one line and exit 2, and config.yaml round trips.

Everything runs on the `synthetic:tiny` scene (4 cameras, 4 frames, 32x32) on the CPU, single-threaded:
on two shared cores extra torch/numba threads only contend and make tiny steps 10-20x slower.
"""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV, SPLAT4D

from splat4d.cli import main
from splat4d.errors import CheckpointError
from splat4d.methods.deformable import DeformableConfig
from splat4d.methods.gaussian_base import GaussianMethod
from splat4d.methods.static import StaticConfig
from splat4d.train.checkpoint import load_checkpoint
from splat4d.train.densify import DensifyConfig
from splat4d.train.run import DataConfig, fit, load_run
from splat4d.train.trainer import TrainConfig, Trainer, TrainingDiverged

TINY = DataConfig("synthetic:tiny")
STATIC_FLAGS = ["--data", "synthetic:tiny", "--device", "cpu", "--method.sh-degree", "1"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


def _static_cfg() -> StaticConfig:
    # grows at 3 and 6 in a 16-iteration run (stop = iters // 2)
    return StaticConfig(sh_degree=1, densify=DensifyConfig(start=2, every=3, grad_threshold=2e-5, reset_every=0))


def _deformable_cfg() -> DeformableConfig:
    # small field and few Gaussians for speed; densify at 10 and 15 (stop = iters // 2 = 20)
    return DeformableConfig(
        coarse_fraction=0.3, sh_degree=1, max_init_points=300, grid_resolution=(8, 8, 8), multires=(1,),
        grid_dim=8, width=16, foreground_init_points=100,
        densify=DensifyConfig(start=5, every=5, grad_threshold=2e-5, reset_every=0, max_gaussians=4000),
    )


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(SPLAT4D + args, capture_output=True, text=True, env=ENV, timeout=timeout)


def _error_line(stderr: str) -> str:
    """The one `splat4d: error: ...` line, after checking there is no traceback and no other error line."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("splat4d:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("config.yaml", "checkpoint.pt"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def static_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("static") / "run"
    fit("static", _static_cfg(), TINY, TrainConfig(iters=16, save_every=0, seed=3, device="cpu"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def deformable_run(tmp_path_factory) -> Path:
    """40 uninterrupted iterations of the deformable method."""
    out = tmp_path_factory.mktemp("deformable") / "run"
    fit("deformable", _deformable_cfg(), TINY, TrainConfig(iters=40, save_every=20, seed=0, device="cpu"), out,
        progress=False)
    return out


# ----------------------------------------------------------------------------- resume
def test_resume_equals_uninterrupted(deformable_run, tmp_path, monkeypatch):
    """Stop a 40-iteration run after iteration 13 (as SIGINT does), resume it to 40: same model, bit for bit.
    At 13 the deformation is on (coarse stage ends at 12), gradient statistics are mid-window and
    densification has happened once (10) with one more to come after the resume (15)."""
    train = TrainConfig(iters=40, save_every=0, seed=0, device="cpu")
    out = tmp_path / "b"
    step_once = Trainer._train_step

    def stop_at_13(self):
        logs = step_once(self)
        if self.step == 13:
            self._stop_signal = signal.SIGINT
        return logs

    monkeypatch.setattr(Trainer, "_train_step", stop_at_13)
    assert fit("deformable", _deformable_cfg(), TINY, train, out, progress=False) == {
        "interrupted": "SIGINT", "iterations": 13}
    monkeypatch.undo()
    mid = load_checkpoint(out, "deformable")
    assert mid["step"] == 13
    assert mid["extra"]["densify"]["count"] is not None  # statistics of 11..13 travel in the checkpoint
    n_init = 300
    n_mid = mid["model"]["gaussians.means"].shape[0]
    assert n_mid != n_init

    result = fit("deformable", _deformable_cfg(), TINY, train, out, resume=True, progress=False)
    assert result["iterations"] == 40
    a, b = load_checkpoint(deformable_run), load_checkpoint(out)
    assert a["step"] == b["step"] == 40
    assert b["model"]["gaussians.means"].shape[0] != n_mid  # grew again after the resume
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert a["model"][k].shape == b["model"][k].shape and torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[m], sb[m]) for m in ("exp_avg", "exp_avg_sq", "step"))


def test_resume_continues_from_saved_step(deformable_run, tmp_path):
    """A run resumed with a larger --iters continues from its checkpoint (not from scratch)."""
    out = _copy_run(deformable_run, tmp_path / "run")
    before = load_checkpoint(out)
    result = fit("deformable", _deformable_cfg(), TINY, TrainConfig(iters=42, save_every=0, seed=0, device="cpu"), out,
                 resume=True, progress=False)
    assert result["iterations"] == 42
    after = load_checkpoint(out)
    assert after["step"] == 42
    assert after["model"]["gaussians.means"].shape == before["model"]["gaussians.means"].shape  # past densify stop
    moved = (after["model"]["gaussians.means"] - before["model"]["gaussians.means"]).abs().max()
    assert 0 < moved < 0.05  # two small steps from the saved state


def test_cli_resume_takes_the_runs_own_settings(deformable_run, tmp_path, capsys):
    """`splat4d fit METHOD --out RUN --resume --iters K` keeps the run's data, seed and method settings."""
    run = _copy_run(deformable_run, tmp_path / "run")
    before = (run / "config.yaml").read_text()
    assert main(["fit", "deformable", "--out", str(run), "--resume", "--iters", "42"]) == 0, capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 42
    after = (run / "config.yaml").read_text()
    assert after == before.replace("iters: 40", "iters: 42")
    assert "path: synthetic:tiny" in after


def test_resume_with_other_shapes_exits_2(deformable_run, tmp_path, capsys):
    run = _copy_run(deformable_run, tmp_path / "run")
    rc = main(["fit", "deformable", "--out", str(run), "--resume", "--iters", "42", "--method.grid-resolution", "4", "4", "4"])
    assert rc == 2
    line = _error_line(capsys.readouterr().err)
    assert "does not fit the given 'deformable' settings" in line and str(run) in line
    assert load_checkpoint(run)["step"] == 40


# ----------------------------------------------------------------------------- NaN guard
def _nan_loss_at(monkeypatch, iteration: int) -> None:
    loss_fn = GaussianMethod.loss

    def loss(self, batch, outs, step):
        value, logs = loss_fn(self, batch, outs, step)
        return (value * float("nan") if step == iteration else value), logs

    monkeypatch.setattr(GaussianMethod, "loss", loss)


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    _nan_loss_at(monkeypatch, 7)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        fit("static", _static_cfg(), TINY, TrainConfig(iters=20, save_every=5, seed=0, device="cpu"), out,
            progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "non-finite loss in iteration 8" in msg  # step index 7 is the 8th iteration
    assert f"last good checkpoint {out / 'checkpoint.pt'} (iteration 5)" in msg
    method, config, step = load_run(out, device="cpu")
    assert step == 5 and config["method"] == "static"
    assert all(torch.isfinite(p).all() for p in method.parameters())
    assert not (out / "metrics.json").exists()


def test_nan_parameters_raise(tmp_path, monkeypatch):
    after_step = GaussianMethod.after_step

    def poison(self, opt, step):
        if step == 3:
            with torch.no_grad():
                self.gaussians.means[0, 0] = float("inf")
        return after_step(self, opt, step)

    monkeypatch.setattr(GaussianMethod, "after_step", poison)
    with pytest.raises(TrainingDiverged, match=r"non-finite (parameters|loss) in iteration [345]; no checkpoint was written yet"):
        fit("static", _static_cfg(), TINY, TrainConfig(iters=20, save_every=5, seed=0, device="cpu"),
            tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_nan_loss_via_cli_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    _nan_loss_at(monkeypatch, 4)
    out = tmp_path / "run"
    rc = main(["fit", "static", *STATIC_FLAGS, "--iters", "10", "--save-every", "2", "--out", str(out)])
    assert rc == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith("splat4d: error: training diverged: non-finite loss in iteration 5;")
    assert "(iteration 4)" in line
    assert load_run(out, device="cpu")[2] == 4


# ----------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_checkpoint_and_resume_finishes(tmp_path, capsys, sig, code):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        SPLAT4D + ["fit", "static", *STATIC_FLAGS, "--iters", "100000", "--save-every", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "config.yaml").exists():  # written when the training loop starts
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "fit did not start within 60 s"
            time.sleep(0.05)
        time.sleep(2.0)  # into the loop (the first step also loads the numba kernels)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    name = signal.Signals(sig).name
    m = re.search(rf"{name} received: saved (\S+) at iteration (\d+); continue with --resume", err)
    assert m, err
    saved = int(m.group(2))
    assert Path(m.group(1)) == out / "checkpoint.pt"
    assert saved > 0
    assert load_run(out, device="cpu")[2] == saved
    assert not (out / "metrics.json").exists()

    # the same command with --resume and a near --iters finishes the run
    iters = saved + 3
    rc = main(["fit", "static", *STATIC_FLAGS, "--iters", str(iters), "--save-every", "0", "--out", str(out), "--resume"])
    assert rc == 0, capsys.readouterr().err
    assert load_checkpoint(out, "static")["step"] == iters
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert metrics["iterations"] == iters


# ----------------------------------------------------------------------------- checkpoint / run-folder errors
def test_corrupt_checkpoint_eval_exits_2(static_run, tmp_path):
    run = _copy_run(static_run, tmp_path / "run")
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    r = _run(["eval", str(run)])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    line = _error_line(r.stderr)
    assert "corrupt or truncated" in line and str(run / "checkpoint.pt") in line


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 10, b"PK\x03\x04" + bytes(200)])
def test_garbage_checkpoint_is_checkpoint_error(static_run, tmp_path, content):
    run = _copy_run(static_run, tmp_path / "run")
    (run / "checkpoint.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_run(run, device="cpu")


def test_checkpoint_of_other_method_exits_2(static_run, deformable_run, tmp_path, capsys):
    run = _copy_run(deformable_run, tmp_path / "run")
    shutil.copy(static_run / "checkpoint.pt", run / "checkpoint.pt")
    assert main(["eval", str(run)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "'static'" in line and "'deformable'" in line
    # a torch.save'd dict that is not a splat4d checkpoint
    torch.save({"model": {}}, run / "checkpoint.pt")
    assert main(["eval", str(run)]) == 2
    assert "is not a splat4d checkpoint" in _error_line(capsys.readouterr().err)


def test_resume_into_run_of_other_method_exits_2(static_run, tmp_path, capsys):
    run = _copy_run(static_run, tmp_path / "run")
    rc = main(["fit", "deformable", "--data", "synthetic:tiny", "--iters", "20", "--out", str(run), "--resume"])
    assert rc == 2
    line = _error_line(capsys.readouterr().err)
    assert "'static'" in line and "'deformable'" in line
    assert load_checkpoint(run)["method"] == "static"


def test_resume_without_run_exits_2(tmp_path, capsys):
    assert main(["fit", "static", *STATIC_FLAGS, "--iters", "5", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no config file" in _error_line(capsys.readouterr().err)


def test_fit_into_existing_run_exits_2(static_run, tmp_path, capsys):
    run = _copy_run(static_run, tmp_path / "run")
    before = (run / "checkpoint.pt").read_bytes()
    assert main(["fit", "static", *STATIC_FLAGS, "--iters", "5", "--out", str(run)]) == 2
    assert "already holds a run" in _error_line(capsys.readouterr().err)
    assert (run / "checkpoint.pt").read_bytes() == before


# ----------------------------------------------------------------------------- config round trip
def test_config_round_trip_reproduces_run(static_run, tmp_path):
    out = tmp_path / "again"
    r = _run(["fit", "static", "--config", str(static_run / "config.yaml"), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert (out / "config.yaml").read_text() == (static_run / "config.yaml").read_text()
    a, b = load_checkpoint(static_run), load_checkpoint(out)
    assert a["step"] == b["step"] == 16
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["model"]["gaussians.means"].shape[0] != 1000  # densification ran in both


def test_training_keeps_one_torch_thread(tmp_path):
    """numba's first parallel launch resets OpenMP's thread count (shared with torch); the Trainer starts
    numba's pool before setting torch's threads, so training really runs with `torch_threads`. Run in a
    fresh process: in this one numba's pool is already started."""
    code = (
        "import torch\n"
        "from splat4d.methods.static import StaticConfig\n"
        "from splat4d.methods.gaussian_base import GaussianMethod\n"
        "from splat4d.train.run import DataConfig, fit\n"
        "from splat4d.train.trainer import TrainConfig\n"
        "seen = []\n"
        "orig = GaussianMethod.loss\n"
        "def loss(self, *a):\n"
        "    seen.append(torch.get_num_threads())\n"
        "    return orig(self, *a)\n"
        "GaussianMethod.loss = loss\n"
        "cfg = StaticConfig(random_init_points=200, sh_degree=0)\n"
        "fit('static', cfg, DataConfig('synthetic:tiny'), TrainConfig(iters=3, torch_threads=1),\n"
        f"    {str(tmp_path / 'run')!r}, progress=False)\n"
        "print(sorted(set(seen)))\n"
    )
    env = {**ENV, "OMP_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[1]"
