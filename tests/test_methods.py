import pytest
import torch

from splat4d.data import load_scene
from splat4d.errors import ConfigError
from splat4d.methods.base import available_methods, get_method


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


def test_registry():
    assert {"static", "deformable"} <= set(available_methods())
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        get_method("nope")


def test_static_ignores_time(scene):
    cls = get_method("static")
    m = cls.from_scene(scene, cls.Config(), torch.Generator().manual_seed(0))
    cam = scene.cameras("test")[0]
    with torch.no_grad():
        a, b = m.render(cam, 0.0).rgb, m.render(cam, 1.0).rgb
    assert torch.equal(a, b)
    assert m.num_primitives == len(scene.points)


def test_deformable_stages_and_deformation(scene):
    cls = get_method("deformable")
    m = cls.from_scene(scene, cls.Config(coarse_fraction=0.5), torch.Generator().manual_seed(0))
    groups = {g.name: g for g in m.param_groups(100)}
    assert int(m.coarse_iters) == 50 and groups["hexplane"].start == 50
    m.on_step(10)
    assert not bool(m.dynamic)
    m.on_step(50)
    assert bool(m.dynamic)
    # zero-initialised heads: deformation starts as the identity
    g0 = m.gaussians_at(0.3)
    assert torch.allclose(g0["means"], m.gaussians.means)
    # time planes start at 1 (no motion); perturb them and the xyz head: positions now depend on time
    with torch.no_grad():
        for p in m.deformation.hexplane.time_planes():
            p.add_(torch.randn_like(p) * 0.3)
        m.deformation.heads["xyz"][1].out_layer.bias.fill_(0.0)
        m.deformation.heads["xyz"][1].out_layer.weight.normal_(0, 0.1)
    a, b = m.gaussians_at(0.0)["means"], m.gaussians_at(1.0)["means"]
    assert (a - b).abs().max() > 1e-4
    # a render is differentiable all the way to the HexPlane
    out = m.render(scene.cameras("test")[0], 0.5)
    out.rgb.sum().backward()
    grads = [p.grad for p in m.deformation.hexplane.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_deformable_regularisers_only_in_dynamic_stage(scene):
    from splat4d.methods.base import Batch

    cls = get_method("deformable")
    m = cls.from_scene(scene, cls.Config(), torch.Generator().manual_seed(0))
    m.param_groups(100)
    view = scene.split("train")[0]
    cam = scene.camera(view)
    batch = Batch(cam, torch.tensor([view.time]), scene.image(view)[None], None, torch.zeros(3), torch.tensor([0]))
    m.on_step(0)
    _, logs = m.loss(batch, [m.render(cam, view.time)], 0)
    assert "reg" not in logs
    m.on_step(99)
    _, logs = m.loss(batch, [m.render(cam, view.time)], 99)
    assert logs["reg"] > 0


@pytest.mark.parametrize("deform_opacity", [False, True])
def test_deformable_fused_equals_unfused(scene, deform_opacity):
    """fused_cpu (fused heads, channels-last HexPlane kernels and regularisers, projection + SH, SSIM)
    against the unfused torch ops with the same weights: loss and every gradient, and state dicts
    load across the two."""
    from splat4d.methods.base import Batch

    cls = get_method("deformable")
    ms = [cls.from_scene(scene, cls.Config(fused_cpu=f, deform_opacity=deform_opacity, sh_degree=2),
                         torch.Generator().manual_seed(0)) for f in (True, False)]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ms[1].parameters():  # heads off zero, planes off their initial values
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ms[0].load_state_dict(ms[1].state_dict())
    view = scene.split("train")[0]
    cam = scene.camera(view)
    batch = Batch(cam, torch.tensor([view.time]), scene.image(view)[None], None, torch.zeros(3), torch.tensor([0]))
    res = []
    for m in ms:
        m.param_groups(100)
        m.on_step(99)
        m.active_sh.fill_(2)
        d = m.deformation(m.gaussians.means, 0.4)
        out = m.render(cam, view.time)
        loss, logs = m.loss(batch, [out], 99)
        loss.backward()
        res.append((d, loss.detach(), logs, dict(m.named_parameters()), out.meta["means2d"].grad))
    (da, la, loga, pa, m2a), (db, lb, logb, pb, m2b) = res
    assert da.keys() == db.keys() == ({"xyz", "scale", "rot", "opacity"} if deform_opacity else {"xyz", "scale", "rot"})
    for k in da:
        torch.testing.assert_close(da[k], db[k], rtol=1e-5, atol=1e-6)
    assert abs(la.item() - lb.item()) <= 1e-5 * abs(lb.item()) and logb["reg"] > 0
    torch.testing.assert_close(m2a, m2b, rtol=1e-3, atol=1e-3 * m2b.abs().max().item())
    for name, p in pb.items():
        assert p.grad is not None, name
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(pa[name].grad, p.grad, rtol=1e-3, atol=2e-3 * scale + 1e-12, msg=name)
