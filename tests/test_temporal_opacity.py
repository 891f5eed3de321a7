"""Temporal opacity (per-Gaussian t_mean / t_log_scale): what the Gaussians hold, how densification edits
and places them, and how `deformable` renders and saves them."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.data import load_scene
from splat4d.gaussians import FIELDS, TEMPORAL_FIELDS, Gaussians
from splat4d.methods.base import get_method
from splat4d.train.densify import DensifyConfig, DensifyStrategy
from splat4d.train.optim import ParamGroup, make_adam


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def _adam(gs: Gaussians) -> torch.optim.Adam:
    """Adam over one group per field, after one step with random gradients (so every field has moments)."""
    opt = make_adam([ParamGroup(k, [p], 1e-3, per_gaussian=True) for k, p in gs.params().items()])
    gen = torch.Generator().manual_seed(1)
    for p in gs.parameters():
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def _temporal(n: int = 6) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    base = Gaussians(torch.randn(n, 3, generator=g), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     torch.full((n, 3), math.log(0.005)), torch.zeros(n), torch.rand(n, 1, 3, generator=g),
                     torch.zeros(n, 3, 3))
    return base.with_temporal_opacity(torch.linspace(0, 1, n), math.log(0.2))


def test_temporal_factor_and_state_round_trip():
    gs = _temporal()
    assert gs.fields == FIELDS + TEMPORAL_FIELDS
    t = 0.3
    expected = torch.exp(-0.5 * ((t - gs.t_means.detach()) / 0.2) ** 2)
    torch.testing.assert_close(gs.temporal_factor(t), expected)
    assert gs.temporal_factor(t).max() <= 1.0
    state = gs.state_dict()
    empty = Gaussians.empty_like_state(state)
    assert empty.temporal
    empty.load_state_dict(state)
    for k in gs.fields:
        assert torch.equal(getattr(empty, k), getattr(gs, k)), k
    plain = Gaussians(*(getattr(gs, k) for k in FIELDS))
    assert not plain.temporal and plain.temporal_factor(t) is None
    with pytest.raises(ValueError):
        Gaussians(*(getattr(gs, k) for k in FIELDS), t_means=gs.t_means)


def test_clone_is_centred_at_the_time_of_its_largest_gradient():
    gs = _temporal()
    opt = _adam(gs)
    cfg = DensifyConfig(start=0, stop=100, every=10, grad_threshold=1e-3, grow_scale3d=0.01, prune_opacity=0.0,
                        reset_every=0, max_gaussians=100, clone_t_scale=0.05)
    s = DensifyStrategy(cfg, 1.0)
    n = len(gs)
    vis = torch.ones(1, n, dtype=torch.bool)
    # Gaussian 1 has a large gradient in the view at t=0.7, a small one at t=0.2; the others stay low
    for t, g1 in ((0.2, 1e-3), (0.7, 5e-2), (0.9, 1e-3)):
        m2d = torch.zeros(1, n, 2, requires_grad=True)
        m2d.grad = torch.zeros(1, n, 2)
        m2d.grad[0, 1, 0] = g1 / 16  # x W/2 = 16 in NDC units
        s.after_backward(gs, [{"means2d": m2d, "visible": vis, "width": 32, "height": 32, "time": t}], 0)
    assert s.peak_time[1] == pytest.approx(0.7)
    parent = {k: getattr(gs, k).detach().clone() for k in gs.fields}
    logs = s.after_step(gs, opt, 10)
    assert logs["cloned"] == 1 and len(gs) == n + 1
    assert gs.t_means[-1].item() == pytest.approx(0.7)  # the clone: at the time it was needed
    assert gs.t_log_scales[-1].item() == pytest.approx(math.log(0.05))  # narrowed from 0.2
    assert torch.equal(gs.t_means[:n].detach(), parent["t_means"])  # the parent keeps its own
    torch.testing.assert_close(gs.means[-1].detach(), parent["means"][1])
    for k in gs.fields:  # every field, temporal ones included, is in the optimiser with matching rows
        p = getattr(gs, k)
        assert opt.state[p]["exp_avg"].shape[0] == n + 1, k
        assert any(q is p for pg in opt.param_groups for q in pg["params"]), k


def test_split_and_prune_carry_the_temporal_fields():
    gs = _temporal()
    with torch.no_grad():
        gs.log_scales[2] = math.log(0.5)  # large: split
        gs.opacity_logits[4] = -10.0  # transparent: pruned
    opt = _adam(gs)
    s = DensifyStrategy(DensifyConfig(start=0, stop=100, every=10, grad_threshold=1e-3, prune_opacity=0.005,
                                      reset_every=0, max_gaussians=100), 1.0)
    s.grad2d, s.count = torch.zeros(6), torch.ones(6)
    s.grad2d[2] = 1.0
    before = gs.t_means.detach().clone()
    s.after_step(gs, opt, 10)
    assert len(gs) == 6  # -1 pruned, split 1 -> 2
    assert torch.equal(gs.t_means[:4].detach(), before[[0, 1, 3, 5]])
    assert torch.equal(gs.t_means[4:].detach(), before[[2, 2]])
    for k in gs.fields:
        assert opt.state[getattr(gs, k)]["exp_avg"].shape[0] == 6, k


@pytest.fixture(scope="module")
def scene():
    return load_scene("synthetic:tiny")


def test_deformable_temporal_opacity_renders_and_hides_faint(scene):
    cls = get_method("deformable")
    m = cls.from_scene(scene, cls.Config(temporal_opacity=True, t_scale_init=0.1), torch.Generator().manual_seed(0))
    g = m.gaussians
    assert g.temporal and torch.all((g.t_means >= 0) & (g.t_means <= 1))
    names = {pg.name for pg in m.param_groups(100)}
    assert {"t_means", "t_log_scales"} <= names
    t = 0.25
    at = m.gaussians_at(t)
    torch.testing.assert_close(at["opacities"], torch.sigmoid(g.opacity_logits) * g.temporal_factor(t))
    m.train()
    out = m.render(scene.cameras("test")[0], t)
    faint = at["opacities"].detach() < 1 / 255
    assert faint.any() and not out.meta["visible"][:, faint].any()
    assert out.meta["time"] == t and out.meta["weights"] is not None
    out.rgb.sum().backward()
    assert g.t_means.grad.abs().sum() > 0 and g.t_log_scales.grad.abs().sum() > 0


def test_deformable_temporal_checkpoint_round_trip(scene, tmp_path):
    from splat4d.train.run import DataConfig, fit, load_run
    from splat4d.train.trainer import TrainConfig

    cls = get_method("deformable")
    cfg = cls.Config(temporal_opacity=True, sh_degree=1)
    fit("deformable", cfg, DataConfig("synthetic:tiny"), TrainConfig(iters=20, save_every=0), tmp_path / "run",
        progress=False)
    m, _, step = load_run(tmp_path / "run", "cpu")
    assert step == 20 and m.gaussians.temporal
    cam = scene.cameras("test")[0]
    with torch.no_grad():
        a = m.render(cam, 0.4).rgb
    assert torch.isfinite(a).all()
