"""Adaptive density control: exact counts of clone / split / prune, what the new Gaussians hold, how the
Adam state follows them, the growth cap, the opacity reset, and gradient accumulation from a real render."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.gaussians import FIELDS, Gaussians
from splat4d.render import rasterize
from splat4d.train.densify import DensifyConfig, DensifyStrategy
from splat4d.train.optim import ParamGroup, make_adam

EXTENT = 1.0
SMALL, LARGE = 0.005, 0.1  # max scale <= grow_scale3d * EXTENT = 0.01 is cloned, above is split
CLONE, SPLIT, PRUNE = [0, 1], [2, 3], [4]
KEEP = [0, 1, 5, 6, 7, 8, 9]  # survivors of the 10 originals (splits replace 2, 3; 4 is pruned)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors on 2 shared cores: extra threads only contend
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(**kw) -> DensifyConfig:
    base = dict(start=0, stop=1000, every=10, grad_threshold=2e-4, grow_scale3d=0.01, prune_opacity=0.005,
                prune_scale3d=0.1, reset_every=0, max_gaussians=1000)
    return DensifyConfig(**{**base, **kw})


def _gaussians(n: int = 10) -> Gaussians:
    """Ten Gaussians: 0, 1 small (clone), 2, 3 large (split), 4 nearly transparent (prune), 5..9 plain."""
    g = torch.Generator().manual_seed(0)
    scales = torch.full((n,), SMALL)
    scales[SPLIT] = LARGE
    scales[7] = 0.05  # large but with a low gradient: kept as is
    opac = torch.full((n,), 0.5)
    opac[PRUNE] = 0.001
    return Gaussians(
        means=torch.randn(n, 3, generator=g),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        log_scales=torch.log(scales)[:, None] * torch.tensor([1.0, 1.1, 1.2]),  # anisotropic, max = scales
        opacity_logits=torch.logit(opac),
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, 3, 3, generator=g),
    )


def _adam_with_state(gs: Gaussians) -> torch.optim.Adam:
    """Adam over one group per field, after two steps with random gradients (non-zero moments)."""
    opt = make_adam([ParamGroup(k, [p], 1e-3, per_gaussian=True) for k, p in gs.params().items()])
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        for p in gs.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def _strategy(cfg: DensifyConfig, n: int = 10) -> DensifyStrategy:
    s = DensifyStrategy(cfg, EXTENT, seed=0)
    s.grad2d = torch.zeros(n)
    s.count = torch.full((n,), 2.0)
    s.grad2d[CLONE + SPLIT] = 2 * 5e-4  # average 5e-4 > threshold 2e-4
    s.grad2d[[5, 6, 7, 8, 9]] = 2 * 1e-4  # average 1e-4 < threshold
    return s


def _state_rows(opt, gs: Gaussians) -> dict[str, dict[str, torch.Tensor]]:
    return {k: {m: opt.state[p][m].clone() for m in ("exp_avg", "exp_avg_sq")} for k, p in gs.params().items()}


def _assert_opt_holds_model(opt, gs: Gaussians) -> None:
    for pg in opt.param_groups:
        (p,) = pg["params"]
        assert p is getattr(gs, pg["name"]), pg["name"]
        assert p in opt.state
    assert len(opt.state) == len(FIELDS)


# ----------------------------------------------------------------------------- grow / prune
def test_clone_split_prune_counts_values_and_adam_state():
    gs = _gaussians()
    opt = _adam_with_state(gs)
    before = {k: p.detach().clone() for k, p in gs.params().items()}
    state_before = _state_rows(opt, gs)
    s = _strategy(_cfg())

    logs = s.after_step(gs, opt, 10)

    assert logs == {"cloned": 2, "split": 2, "pruned": 1}
    # 10 + 2 clones + 2 x (2 children - 1 parent) - 1 pruned
    assert len(gs) == 13
    assert s.grad2d is None and s.count is None  # statistics restart after growing
    for k, p in gs.params().items():
        assert isinstance(p, torch.nn.Parameter) and p.shape[0] == 13 and p.shape[1:] == before[k].shape[1:]
    # layout: survivors in order, then clones, then children [2, 3, 2, 3]
    survivors, clones, children = slice(0, 7), slice(7, 9), slice(9, 13)
    parents = torch.tensor(SPLIT * 2)
    for k in FIELDS:
        new, old = getattr(gs, k).detach(), before[k]
        assert torch.equal(new[survivors], old[KEEP]), k
        assert torch.equal(new[clones], old[CLONE]), k
        if k not in ("means", "log_scales"):
            assert torch.equal(new[children], old[parents]), k
    # children: scales / 1.6, placed within a few parent scales of the parent
    torch.testing.assert_close(gs.scales[children], torch.exp(before["log_scales"][parents]) / 1.6)
    offset = gs.means[children].detach() - before["means"][parents]
    assert (offset.norm(dim=-1) < 5 * LARGE * 1.2).all()
    assert (offset.norm(dim=-1) > 0).all()
    assert not torch.equal(offset[:2], offset[2:])  # the two children of a parent differ

    _assert_opt_holds_model(opt, gs)
    for k, p in gs.params().items():
        st = opt.state[p]
        for m in ("exp_avg", "exp_avg_sq"):
            assert st[m].shape == p.shape
            assert torch.equal(st[m][survivors], state_before[k][m][KEEP]), (k, m)
            assert not st[m][survivors].eq(0).all()
            assert (st[m][7:] == 0).all(), (k, m)  # clones and children start with fresh moments
        assert int(st["step"]) == 2


def test_optimizer_keeps_working_after_edit():
    gs = _gaussians()
    opt = _adam_with_state(gs)
    _strategy(_cfg()).after_step(gs, opt, 10)
    loss = sum((p**2).sum() for p in gs.parameters())
    loss.backward()
    old = {k: p.detach().clone() for k, p in gs.params().items()}
    opt.step()
    for k, p in gs.params().items():
        assert not torch.equal(p.detach(), old[k]), k


def test_schedule_start_stop_every():
    gs = _gaussians()
    opt = _adam_with_state(gs)
    s = _strategy(_cfg(start=10, stop=40, every=10))
    assert s.after_step(gs, opt, 10) == {} and len(gs) == 10  # not after `start` yet
    assert s.after_step(gs, opt, 15) == {} and len(gs) == 10  # not a multiple of `every`
    assert s.after_step(gs, opt, 40) == {} and len(gs) == 10  # at `stop`
    assert s.after_step(gs, opt, 20) == {"cloned": 2, "split": 2, "pruned": 1} and len(gs) == 13


def test_prune_large_after_first_reset_and_never_empty():
    gs = _gaussians()
    opt = _adam_with_state(gs)
    s = DensifyStrategy(_cfg(reset_every=100, prune_scale3d=0.04), EXTENT)
    # before the first reset only opacity prunes
    assert s.prune(gs, opt, 100) == {"pruned": 1} and len(gs) == 9
    # after it, Gaussians larger than 0.04 (old 2, 3, 7) go too
    assert s.prune(gs, opt, 101) == {"pruned": 3} and len(gs) == 6
    assert (gs.scales.max(-1).values <= 0.04).all()
    _assert_opt_holds_model(opt, gs)

    gs = _gaussians()
    opt = _adam_with_state(gs)
    before = gs.opacities.detach().clone()
    s = DensifyStrategy(_cfg(prune_opacity=0.9), EXTENT)
    assert s.prune(gs, opt, 1) == {"pruned": 9} and len(gs) == 1  # the most opaque one stays
    assert torch.equal(gs.opacities.detach(), before.max()[None])


@pytest.mark.parametrize("cap", [5, 10, 11, 12, 13, 14, 15])
def test_max_gaussians_cap_keeps_the_highest_gradients(cap):
    gs = _gaussians()
    opt = _adam_with_state(gs)
    s = _strategy(_cfg(max_gaussians=cap))
    # candidates by average gradient: 2 (split) > 3 (split) > 1 (clone) > 0 (clone)
    s.grad2d[[2, 3, 1, 0]] = 2 * torch.tensor([9e-4, 8e-4, 7e-4, 6e-4])
    before = gs.means.detach().clone()
    logs = s.grow(gs, opt)
    room = max(cap - 10, 0)
    chosen = [2, 3, 1, 0][:room]
    # unlimited growth gives 14; each clone and each split adds exactly one
    assert len(gs) == max(min(cap, 14), 10)
    assert logs == {"cloned": len([i for i in chosen if i in CLONE]), "split": len([i for i in chosen if i in SPLIT])}
    n_rest = 10 - logs["split"]
    clones = gs.means.detach()[n_rest : n_rest + logs["cloned"]]
    assert torch.equal(clones, before[sorted(i for i in chosen if i in CLONE)])
    _assert_opt_holds_model(opt, gs)


def test_statistic_is_per_view_whatever_the_batch_size():
    """A batch of B views averages the loss over them, so each view's gradient is B times smaller; the
    statistic multiplies it back: one render of two cameras, two renders of one camera each, and two
    single-view losses accumulate the same numbers."""
    W = H = 24
    cams = Cameras.orbit(2, radius=3.0, width=W, height=H)
    gen = torch.Generator().manual_seed(0)
    n = 20
    gs = Gaussians(torch.randn(n, 3, generator=gen) * 0.3, torch.randn(n, 4, generator=gen),
                   torch.full((n, 3), math.log(0.1)), torch.zeros(n), torch.rand(n, 1, 3, generator=gen),
                   torch.zeros(n, 0, 3))
    target = torch.rand(2, H, W, 3, generator=gen)

    def stats(renders: list[list[int]], losses: list[list[int]]) -> torch.Tensor:
        s = DensifyStrategy(_cfg(), EXTENT)
        for group in losses:
            outs = [rasterize(gs.means, gs.quats, gs.scales, gs.opacities, gs.sh, cams[r], sh_degree=0,
                              backend="cpu") for r in renders if set(r) <= set(group)]
            pred = torch.cat([o.rgb for o in outs])
            (pred - target[group]).abs().mean().backward()
            s.after_backward(gs, [o.meta for o in outs], 0)
            gs.zero_grad()
        return s.grad2d

    one_render = stats([[0, 1]], [[0, 1]])
    two_renders = stats([[0], [1]], [[0, 1]])
    alone = stats([[0], [1]], [[0], [1]])
    assert one_render.abs().sum() > 0
    torch.testing.assert_close(one_render, alone, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(two_renders, alone, rtol=1e-5, atol=1e-9)


# ----------------------------------------------------------------------------- opacity reset
def test_reset_opacity_caps_and_zeroes_its_adam_state():
    gs = _gaussians()
    opt = _adam_with_state(gs)
    before = gs.opacities.detach().clone()
    state_before = _state_rows(opt, gs)
    s = DensifyStrategy(_cfg(reset_every=30), EXTENT)
    logs = s.after_step(gs, opt, 30)
    assert logs == {"reset": True}
    assert len(gs) == 10
    cap = 2 * 0.005
    torch.testing.assert_close(gs.opacities.detach(), before.clamp_max(cap), rtol=1e-5, atol=0)
    assert gs.opacities[4] < cap and torch.equal(gs.opacities[4].detach(), before[4])  # below the cap: unchanged
    _assert_opt_holds_model(opt, gs)
    st = opt.state[gs.opacity_logits]
    assert (st["exp_avg"] == 0).all() and (st["exp_avg_sq"] == 0).all()
    for k in FIELDS:
        if k != "opacity_logits":
            assert torch.equal(opt.state[getattr(gs, k)]["exp_avg"], state_before[k]["exp_avg"]), k


# ----------------------------------------------------------------------------- gradient statistics
def test_after_backward_accumulates_screen_gradients_of_visible_only():
    W = H = 32
    cam = Cameras.look_at([0.0, -3.0, 0.0], [0.0, 0.0, 0.0], fov_deg=50.0, width=W, height=H)
    n = 6
    means = torch.tensor([[0.0, 0, 0], [0.3, 0, 0.2], [-0.3, 0.2, -0.2], [0.1, 0.5, 0.1],
                          [0.0, -5.0, 0.0],  # behind the camera
                          [40.0, 0.0, 0.0]])  # far outside the field of view
    gs = Gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), math.log(0.1)),
                   torch.zeros(n), torch.rand(n, 1, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(n, 0, 3))
    s = DensifyStrategy(_cfg(stop=5), EXTENT)
    target = torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(1))
    expected = torch.zeros(n)
    for step in range(2):
        out = rasterize(gs.means, gs.quats, gs.scales, gs.opacities, gs.sh, cam, background=torch.zeros(3),
                        sh_degree=0, backend="cpu")
        ((out.rgb - target) ** 2).sum().backward()
        s.after_backward(gs, [out.meta], step)
        vis = out.meta["visible"][0]
        g2d = out.meta["means2d"].grad[0]  # [N, 2]
        assert vis.tolist() == [True] * 4 + [False] * 2
        assert (g2d[vis].norm(dim=-1) > 0).all()
        expected += torch.where(vis, (g2d * torch.tensor([W / 2, H / 2])).norm(dim=-1), torch.zeros(n))
        gs.zero_grad()
    assert s.count.tolist() == [2.0] * 4 + [0.0] * 2
    torch.testing.assert_close(s.grad2d, expected)
    assert (s.grad2d[4:] == 0).all()
    # from `stop` on nothing accumulates
    grad2d, count = s.grad2d.clone(), s.count.clone()
    out = rasterize(gs.means, gs.quats, gs.scales, gs.opacities, gs.sh, cam, sh_degree=0, backend="cpu")
    out.rgb.sum().backward()
    s.after_backward(gs, [out.meta], 5)
    assert torch.equal(s.grad2d, grad2d) and torch.equal(s.count, count)


def test_stop_is_at_most_half_of_the_training():
    gs = _gaussians()
    opt = _adam_with_state(gs)
    s = _strategy(_cfg(stop=1000, reset_every=10))
    s.total_steps = 30  # set by the method's param_groups(total_steps)
    assert s.stop == 15
    assert s.after_step(gs, opt, 20) == {} and len(gs) == 10  # neither growth nor reset past half
    assert s.after_step(gs, opt, 10) == {"cloned": 2, "split": 2, "pruned": 1, "reset": True}


def test_auto_grad_threshold_follows_views_per_time():
    import dataclasses

    from splat4d.data import load_scene
    from splat4d.methods.static import StaticConfig, StaticGaussians
    from splat4d.train.densify import MONOCULAR_GRAD_THRESHOLD, MULTIVIEW_GRAD_THRESHOLD, auto_grad_threshold

    multi = load_scene("synthetic:tiny")
    assert multi.views_per_time("train") >= 2
    first_per_time = {}
    for v in multi.split("train"):
        first_per_time.setdefault(v.time, v)
    mono = dataclasses.replace(multi, splits={**multi.splits, "train": list(first_per_time.values())})
    assert mono.views_per_time("train") == 1
    assert auto_grad_threshold(1) == MONOCULAR_GRAD_THRESHOLD and auto_grad_threshold(4) == MULTIVIEW_GRAD_THRESHOLD

    for scene, want in ((multi, MULTIVIEW_GRAD_THRESHOLD), (mono, MONOCULAR_GRAD_THRESHOLD)):
        cfg = StaticConfig(random_init_points=50, sh_degree=0)
        assert cfg.densify.grad_threshold == 0  # auto
        method = StaticGaussians.from_scene(scene, cfg)
        assert cfg.densify.grad_threshold == want  # resolved in place, so config.yaml records it
        assert method.strategy.cfg.grad_threshold == want
    explicit = StaticConfig(random_init_points=50, sh_degree=0)
    explicit.densify.grad_threshold = 3e-4
    StaticGaussians.from_scene(mono, explicit)
    assert explicit.densify.grad_threshold == 3e-4


def test_contribution_keeps_faint_gaussians_seen_at_some_time():
    """With blend weights from the renders (a method with time-varying opacity), a Gaussian below
    prune_opacity survives while it covered at least half a pixel in some view; without, it is pruned."""
    gs = _gaussians()
    opt = _adam_with_state(gs)
    s = _strategy(_cfg())
    meta = {"means2d": torch.zeros(1, 10, 2), "visible": torch.ones(1, 10, dtype=torch.bool), "width": 8,
            "height": 8, "weights": torch.zeros(1, 10)}
    meta["weights"][0, PRUNE] = 0.7  # seen (deformed opacity) in this view
    s.after_backward(gs, [meta], step=5)
    logs = s.after_step(gs, opt, step=10)
    assert logs["pruned"] == 0 and logs["cloned"] == 2 and logs["split"] == 2
    assert len(gs) == 10 + 2 + 2
    _assert_opt_holds_model(opt, gs)

    gs2 = _gaussians()
    opt2 = _adam_with_state(gs2)
    s2 = _strategy(_cfg())
    meta["weights"][0, PRUNE] = 0.2  # too faint everywhere
    s2.after_backward(gs2, [meta], step=5)
    assert s2.after_step(gs2, opt2, step=10)["pruned"] == 1
