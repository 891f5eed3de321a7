"""The `fourk4d` method on a tiny synthetic rig: carved initial points, renders, a loss whose gradients
reach positions, grid and networks, a state-dict round trip that renders identically, training that
improves, and refusal of a monocular capture."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from splat4d.data import load_scene
from splat4d.errors import DatasetError
from splat4d.methods.base import Batch, get_method
from splat4d.methods.fourk4d.carve import CarveConfig


def _cfg(**kw):
    cls = get_method("fourk4d")
    return cls.Config(carve=CarveConfig(coarse_resolution=12, refine=2, points=600), grid_resolution=(8, 8, 8),
                      grid_dim=4, multires=(1,), hidden=16, **kw)


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


@pytest.fixture(scope="module")
def model(scene):
    return get_method("fourk4d").from_scene(scene, _cfg(), torch.Generator().manual_seed(0))


def _batch(scene, view):
    cam = scene.camera(view)
    alphas = scene.alpha(view)[None] if scene.alpha(view) is not None else None
    return Batch(cam, torch.tensor([view.time]), scene.image(view)[None], alphas, torch.tensor(scene.background),
                 torch.tensor([0]))


def test_points_start_on_each_frames_hull(scene, model):
    assert model.positions.shape == (scene.num_frames, 600, 3)
    lo, hi = scene.bounds
    coarse = float((hi - lo).max()) / 12  # the voxel grid ends within a coarse voxel past the box
    assert ((model.positions >= lo - 1e-4) & (model.positions <= hi + coarse)).all()
    assert model.images.dtype == torch.uint8 and model.images.shape[:2] == (scene.num_frames, 3)


def test_render_and_gradients(scene, model):
    view = scene.split("train")[1]
    model.train()
    out = model.render(scene.camera(view), view.time, torch.zeros(3))
    assert out.rgb.shape == (1, 32, 32, 3) and out.alpha.shape == (1, 32, 32, 1)
    assert float(out.alpha.detach().max()) > 0.5  # the hull covers the view
    model.param_groups(10)
    loss, logs = model.loss(_batch(scene, view), [out], 0)
    loss.backward()
    assert model.positions.grad is not None and model.positions.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.grid.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blend_net.parameters())
    assert {"mask", "displacement", "psnr"} <= set(logs)
    model.zero_grad()


def test_state_dict_round_trip_renders_the_same(scene, model):
    cls = get_method("fourk4d")
    state = model.state_dict()
    other = cls.empty(model.cfg, state)
    other.load_state_dict(state)
    view = scene.split("test")[0]
    model.eval(), other.eval()
    with torch.no_grad():
        a = model.render(scene.camera(view), view.time).rgb
        b = other.render(scene.camera(view), view.time).rgb
    assert torch.equal(a, b)


def test_a_few_steps_lower_the_loss(scene):
    from splat4d.train.optim import make_adam

    m = get_method("fourk4d").from_scene(scene, _cfg(), torch.Generator().manual_seed(0))
    m.train()
    groups = m.param_groups(40)
    opt = make_adam(groups)
    views = scene.split("train")
    first = last = None
    for step in range(40):
        v = views[step % len(views)]
        out = m.render(scene.camera(v), v.time, torch.zeros(3))
        loss, _ = m.loss(_batch(scene, v), [out], step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert last < 0.8 * first, (first, last)


def test_monocular_capture_is_refused():
    scene = load_scene("synthetic:fast")
    with pytest.raises(DatasetError, match="synchronized cameras"):
        get_method("fourk4d").from_scene(scene, _cfg())


def test_baked_model_renders_like_the_trained_one(scene, model):
    from splat4d.methods.fourk4d.baked import bake

    model.eval()
    for precision, tol in (("fp32", 1e-5), ("fp16", 1e-3)):
        baked = bake(model, precision)
        for view in scene.split("test"):
            with torch.no_grad():
                a = model.render(scene.camera(view), view.time, torch.zeros(3)).rgb
                b = baked.render(scene.camera(view), view.time, torch.zeros(3)).rgb
            assert float((a - b).abs().max()) <= tol, (precision, float((a - b).abs().max()))
            eye = scene.camera(view).centers[0]  # the fused colour kernel and its torch twin agree
            torch.testing.assert_close(baked.point_colors(0, eye), baked.point_colors(0, eye, fused=False),
                                       atol=2e-6, rtol=0)
    assert not list(baked.parameters())  # the networks are gone
    with torch.no_grad():  # new logits loaded in place: the kept softmax numerators follow them
        baked.load_state_dict({**baked.state_dict(), "logits": baked.logits.flip(-1)})
    torch.testing.assert_close(baked.point_colors(0, eye), baked.point_colors(0, eye, fused=False), atol=2e-6, rtol=0)


def test_bake_command_and_bad_input(scene, model, tmp_path, capsys):
    from splat4d.cli import main
    from splat4d.train.checkpoint import save_checkpoint, save_config

    run = tmp_path / "run"
    run.mkdir()
    save_config(run, {"method": "fourk4d", "method_config": dataclasses.asdict(_cfg()), "data": {"path": "synthetic:tiny"}})
    save_checkpoint(run, {"method": "fourk4d", "config": {}, "step": 3, "model": model.state_dict(), "extra": {},
                          "optimizer": {"state": {}, "param_groups": []},
                          "sampler": torch.Generator().manual_seed(0).get_state(), "order": []})
    assert main(["bake", str(run), "-o", str(tmp_path / "baked")]) == 0
    from splat4d.train.run import load_run

    baked, config, step = load_run(tmp_path / "baked", "cpu")
    assert config["method"] == "fourk4d_baked" and step == 3 and baked.num_primitives == 600
    capsys.readouterr()
    assert main(["bake", str(tmp_path / "baked"), "-o", str(tmp_path / "again")]) == 2  # not a fourk4d run
    assert "bake takes a fourk4d run" in capsys.readouterr().err
    (tmp_path / "baked" / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["eval", str(tmp_path / "baked")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_exported_points_agree_between_trained_and_baked(scene, model):
    from splat4d.methods.fourk4d.baked import bake

    xyz_a, rgb_a = model.colored_points_at(0.4)
    xyz_b, rgb_b = bake(model, "fp16").colored_points_at(0.4)
    assert torch.equal(xyz_a, xyz_b) and xyz_a.shape == (600, 3)
    assert float((rgb_a - rgb_b).abs().max()) <= 2e-3
    assert float(rgb_a.min()) >= 0.0 and float(rgb_a.max()) <= 1.0
