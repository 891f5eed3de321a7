"""ADC-GS's anchor model (eqs. 1-5): voxel anchors, K primitives per anchor, coarse motion shared by an
anchor's primitives, the fine stage's switch, and gradients through a render."""

import math

import torch
import pytest

from splat4d.cameras import Cameras
from splat4d.methods.adcgs.anchors import AnchorDims, AnchorField
from splat4d.render import rasterize

DIMS = AnchorDims(k=4, f_v=8, f_g=4, time_rows=5, time_dim=16, f_t=8, pe_freqs=4, hidden=16, deform_hidden=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def _field(fine=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(200, 3, generator=g) - 0.5
    return AnchorField.init_from_points(pts, torch.rand(200, 3, generator=g), 0.25, DIMS, g, fine)


def test_anchors_are_voxel_centres_with_mean_colours():
    pts = torch.tensor([[0.1, 0.1, 0.1], [0.2, 0.05, 0.15], [0.9, 0.1, 0.1]])
    cols = torch.tensor([[1.0, 0, 0], [0.0, 0, 1], [0.0, 1, 0]])
    f = AnchorField.init_from_points(pts, cols, 0.5, DIMS, torch.Generator().manual_seed(0))
    assert len(f) == 2
    order = f.anchors[:, 0].argsort()
    torch.testing.assert_close(f.anchors[order].detach(), torch.tensor([[0.25, 0.25, 0.25], [0.75, 0.25, 0.25]]))
    torch.testing.assert_close(f.colors[order].detach(), torch.tensor([[0.5, 0, 0.5], [0.0, 1, 0]]))
    assert f.f_g.shape == (2, DIMS.k, DIMS.f_g) and f.log_cov.shape == (2, 6)
    with pytest.raises(ValueError, match="f_v must have shape"):
        AnchorField(f.anchors, f.log_cov, f.colors, torch.zeros(2, 3), f.f_g, DIMS)


def test_canonical_primitives_follow_their_anchor_scales():
    f = _field()
    c = f.canonical()
    A, K = len(f), DIMS.k
    assert c["offsets"].shape == (A, K, 3) and c["sizes"].shape == (A, K, 3) and c["opacity"].shape == (A, K)
    with torch.no_grad():
        f.log_cov[:, :3] += 1.0  # offsets scale with exp(Sigma_v[:3]), sizes with exp(Sigma_v[3:])
    torch.testing.assert_close(f.canonical()["offsets"], c["offsets"] * torch.e, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(f.canonical()["sizes"], c["sizes"])
    assert (c["sizes"] <= torch.exp(f.log_cov[:, None, 3:]) + 1e-7).all()


def test_deformation_starts_at_zero_and_moves_an_anchors_primitives_together():
    f = _field()
    a, b = f.primitives(0.0), f.primitives(1.0)
    assert torch.equal(a["means"], b["means"])  # zero-initialised deformation: static at first
    with torch.no_grad():
        f.coarse.out.weight.normal_(0, 0.5)
        f.coarse.out.bias.normal_(0, 0.5)
    a, b = f.primitives(0.0), f.primitives(1.0)
    moved = b["means"] - a["means"]
    anchor_of = a["slot"] // DIMS.k
    for anchor in anchor_of.unique()[:5]:
        rows = moved[anchor_of == anchor]
        torch.testing.assert_close(rows, rows[:1].expand_as(rows))  # one dX per anchor
    assert moved.abs().max() > 1e-3
    static = f.primitives(1.0, dynamic=False)
    torch.testing.assert_close(static["means"], f.primitives(0.0, dynamic=False)["means"])


def test_fine_stage_switch_and_hidden_primitives():
    f, g = _field(fine=True), _field(fine=False)
    torch.testing.assert_close(g.canonical()["opacity"], torch.full((len(g), DIMS.k), 0.1))  # all drawn at first
    with torch.no_grad():
        for m in (f, g):
            m.fine_net.out.bias.fill_(-5.0)  # the fine stage lowers every opacity at every time
    faded = f.primitives(0.5)
    assert len(faded["means"]) == len(f) * DIMS.k  # scaled, not switched off: still drawn, still learning
    assert faded["opacities"].max() < 0.1 * 2 * torch.sigmoid(torch.tensor(-4.0))
    torch.testing.assert_close(g.primitives(0.5)["opacities"], torch.full((len(g) * DIMS.k,), 0.1))
    assert torch.equal(g.deform(0.5)["opac_scale_k"], torch.ones(len(g), DIMS.k))
    with torch.no_grad():
        f.theta.out.bias[13] = -7.0  # O_k < 0.5/255: could never pass the rasterizer's 1/255, not drawn
    assert len(f.primitives(0.5)["means"]) == 0
    with torch.no_grad():
        f.theta.out.bias[13] = -6.0  # 0.0025 > 0.5/255: drawn (a fine scale up to 2 may make it visible)
    assert len(f.primitives(0.5)["means"]) == len(f) * DIMS.k


def test_a_render_reaches_every_part():
    f = _field()
    with torch.no_grad():
        f.coarse.out.weight.normal_(0, 0.1)
        f.fine_net.out.weight.normal_(0, 0.1)
        f.theta.out.bias[13] = 2.0  # opaque primitives
    cam = Cameras.look_at([[0.0, -2.5, 0.5]], [0.0, 0.0, 0.0], up=(0, 0, 1), fov_deg=50, width=24, height=24)
    p = f.primitives(0.3)
    out = rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], cam,
                    background=torch.zeros(3), backend="cpu")
    out.rgb.sum().backward()
    for name, param in [("f_v", f.f_v), ("f_g", f.f_g), ("anchors", f.anchors), ("log_cov", f.log_cov),
                        ("colors", f.colors), ("theta", f.theta.inp.weight), ("time_table", f.time_table.table),
                        ("coarse", f.coarse.out.weight), ("fine", f.fine_net.out.weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_coarse_position_encoding_gives_anchors_with_one_feature_their_own_motion():
    from dataclasses import replace

    for freqs in (0, 2):
        dims = replace(DIMS, coarse_pe_freqs=freqs)
        g = torch.Generator().manual_seed(0)
        f = AnchorField.init_from_points(torch.rand(200, 3, generator=g) - 0.5, None, 0.25, dims, g)
        assert f.coarse.inp.in_features == dims.f_v + dims.f_t + 6 * freqs
        with torch.no_grad():
            f.f_v.zero_()  # one feature for every anchor
            for layer in (f.coarse.out, f.coarse.skip):
                layer.weight.normal_(0, 0.5)
        dx = f.deform(0.5)["dx"]
        spread = (dx - dx[:1]).abs().max()
        assert (spread > 1e-3) if freqs else (spread < 1e-6), freqs


def test_time_feature_tells_frames_apart_from_the_start():
    # a weak f_t (time table at 0.1) left the coarse network learning one displacement for every t
    f = _field()
    with torch.no_grad():
        a, b = f.time_feature(0.0), f.time_feature(1.0)
    assert (a - b).abs().mean() > 0.2


def test_shared_input_forward_matches_the_concatenated_one_with_gradients():
    from splat4d.methods.adcgs.anchors import ResidualMLP

    torch.manual_seed(0)
    net = ResidualMLP(7, 16, 5)
    rows, shared = torch.randn(9, 4, requires_grad=True), torch.randn(3, requires_grad=True)
    ref = net(torch.cat([rows, shared.expand(9, -1)], dim=-1))
    got = net.forward_shared(rows, shared)
    torch.testing.assert_close(got, ref)
    g_ref = torch.autograd.grad(ref.square().sum(), [rows, shared, net.inp.weight, net.skip.weight])
    g_got = torch.autograd.grad(got.square().sum(), [rows, shared, net.inp.weight, net.skip.weight])
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(net.forward_shared(None, shared, net.precompute(rows)), ref)


def test_temporal_opacity_scales_an_anchors_primitives_by_its_time_window():
    f = _field()
    A, K = len(f), DIMS.k
    mu = torch.linspace(0, 1, A)
    t = AnchorField(*(getattr(f, k) for k in f.FIELDS), DIMS, True, 1.0, (mu, torch.full((A,), -2.0)))
    t.load_state_dict({k: v for k, v in f.state_dict().items()}, strict=False)
    assert t.fields == f.FIELDS + ("t_means", "t_log_scales") and f.temporal_factor(0.3) is None
    factor = t.temporal_factor(0.3)
    torch.testing.assert_close(factor, torch.exp(-0.5 * ((0.3 - mu) / torch.exp(torch.tensor(-2.0))) ** 2))
    with torch.no_grad():
        plain, timed = f.primitives(0.3), t.primitives(0.3)
    torch.testing.assert_close(timed["opacities"], plain["opacities"] * factor.repeat_interleave(K))
    torch.testing.assert_close(timed["means"], plain["means"])
    sub = t.subset(torch.tensor([3, 1]))  # rows and their time windows travel together; networks are copied
    torch.testing.assert_close(sub.t_means.detach(), mu[[3, 1]])
    assert torch.equal(sub.theta.out.bias, t.theta.out.bias)
    with pytest.raises(ValueError, match="t_means must have shape"):
        AnchorField(*(getattr(f, k) for k in f.FIELDS), DIMS, True, 1.0, (mu[:2], mu[:2]))


def test_an_anchor_with_a_velocity_moves_by_it_away_from_its_time_centre():
    f = _field()
    A, K = len(f), DIMS.k
    mu, v = torch.linspace(0, 1, A), torch.randn(A, 3, generator=torch.Generator().manual_seed(1))
    t = AnchorField(*(getattr(f, k) for k in f.FIELDS), DIMS, True, 1.0, (mu, torch.full((A,), -2.0), v))
    t.load_state_dict({k: val for k, val in f.state_dict().items()}, strict=False)
    assert t.velocity and t.fields[-1] == "t_velocity"
    with torch.no_grad():  # the coarse network starts at zero motion: what moves is v (t - mu)
        a, b = t.primitives(0.2), t.primitives(0.7)
        still = t.primitives(0.7, dynamic=False)  # the static warm-up has no motion at all
    slot_anchor = a["slot"] // K
    torch.testing.assert_close(b["means"] - a["means"], 0.5 * v[slot_anchor])
    torch.testing.assert_close(a["means"] - a["canonical_means"], (v * (0.2 - mu)[:, None])[slot_anchor])
    torch.testing.assert_close(still["means"], still["canonical_means"])
    sub = t.subset(torch.tensor([2, 0]))
    torch.testing.assert_close(sub.t_velocity.detach(), v[[2, 0]])
    loss = t.primitives(0.9)["means"].sum()
    loss.backward()
    torch.testing.assert_close(t.t_velocity.grad, (0.9 - mu)[:, None].expand(A, 3) * K, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="t_velocity must have shape"):
        AnchorField(*(getattr(f, k) for k in f.FIELDS), DIMS, True, 1.0, (mu, mu, v[:, :2]))


def test_growth_places_finer_anchors_where_the_coarse_voxel_is_taken():
    from types import SimpleNamespace

    from splat4d.methods.adcgs.refine import AnchorRefiner

    f = AnchorField.init_from_points(torch.tensor([[0.5, 0.5, 0.5]]), None, 1.0, DIMS, torch.Generator().manual_seed(0))
    K = DIMS.k  # primitives at x = 0.5, 0.75, 0.8, 0.5: all inside the anchor's voxel [0, 1)^3
    offsets = torch.zeros(1, K, 3)
    offsets[0, :, 0] = torch.tensor([0.0, 0.25, 0.3, 0.0])
    f.canonical = lambda attrs=None: {"offsets": offsets}  # noqa: E731 (only the offsets are read)
    significance = torch.tensor([0.0, 2.0, 3.0, 0.5])  # thresholds 0.9, 1.8, 3.6 at levels 0, 1, 2
    keep = torch.tensor([True])

    def grown(levels):
        cfg = SimpleNamespace(k=K, max_anchors=10, grow_levels=levels, clone_t_scale=0.05)
        return AnchorRefiner(cfg)._new_anchors(f, significance, keep, 1.0, 0.9)

    assert len(grown(1)["anchors"]) == 0  # the only coarse voxel holds the anchor itself
    new = grown(3)  # level 1 (voxel 0.25): primitives 1 and 2 share the free voxel [0.75, 1) x [0.5, 0.75)^2
    torch.testing.assert_close(new["anchors"], torch.tensor([[0.875, 0.625, 0.625]]))
    torch.testing.assert_close(new["log_cov"], f.log_cov.detach() - math.log(4.0))


def test_grown_anchors_span_the_times_their_parent_primitive_was_needed():
    from types import SimpleNamespace

    from splat4d.methods.adcgs.refine import AnchorRefiner

    K = DIMS.k
    pts = torch.tensor([[0.5, 0.5, 0.5], [2.5, 0.5, 0.5]])
    f = AnchorField.init_from_points(pts, None, 1.0, DIMS, torch.Generator().manual_seed(0))
    f = AnchorField(*(getattr(f, k) for k in f.FIELDS), DIMS, True, 1.0,
                    (torch.tensor([0.5, 0.5]), torch.log(torch.tensor([0.4, 0.4]))))
    offsets = torch.zeros(2, K, 3)
    offsets[:, 1, 0] = 1.0  # primitive 1 of each anchor sits in the next voxel along x (free)
    f.canonical = lambda attrs=None: {"offsets": offsets}  # noqa: E731 (only the offsets are read)
    r = AnchorRefiner(SimpleNamespace(k=K, max_anchors=10, grow_levels=1, clone_t_scale=0.05))
    r.wgrad, r.wtime, r.wtime2 = torch.zeros(2 * K), torch.zeros(2 * K), torch.zeros(2 * K)
    for t in torch.linspace(0.0, 1.0, 11):  # anchor 0's primitive needed at every time, anchor 1's at t = 0.8
        r.wgrad[1] += 1.0
        r.wtime[1] += t
        r.wtime2[1] += t * t
    r.wgrad[K + 1], r.wtime[K + 1], r.wtime2[K + 1] = 2.0, 1.6, 1.28
    mean, spread = r.gradient_times(f)
    torch.testing.assert_close(mean[[1, K + 1, 0]], torch.tensor([0.5, 0.8, 0.5]))
    torch.testing.assert_close(spread[[1, K + 1, 0]], torch.tensor([0.3162, 0.0, 0.0]), atol=1e-4, rtol=0)
    significance = torch.zeros(2 * K)
    significance[[1, K + 1]] = 1.0
    new = r._new_anchors(f, significance, torch.tensor([True, True]), 1.0, 0.5)
    torch.testing.assert_close(new["anchors"], torch.tensor([[1.5, 0.5, 0.5], [3.5, 0.5, 0.5]]))
    torch.testing.assert_close(new["t_means"], torch.tensor([0.5, 0.8]))
    # twice the spread, at most the parent's width / at least clone_t_scale
    torch.testing.assert_close(new["t_log_scales"].exp(), torch.tensor([0.4, 0.05]))
    box = torch.tensor([[0.0, 0.0, 0.0], [3.0, 1.0, 1.0]])  # anchor 1's primitive (x = 3.5) lies outside
    inside = r._new_anchors(f, significance, torch.tensor([True, True]), 1.0, 0.5, box=box)
    torch.testing.assert_close(inside["anchors"], torch.tensor([[1.5, 0.5, 0.5]]))


def test_an_anchor_takes_its_voxel_over_the_time_its_one_sigma_interval_covers():
    from types import SimpleNamespace

    from splat4d.methods.adcgs.refine import AnchorRefiner

    r = AnchorRefiner(SimpleNamespace(k=DIMS.k, max_anchors=10, grow_levels=1, clone_t_scale=0.05))  # bins of 0.1
    placed = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    placed_t = (torch.tensor([0.3, 0.9]), torch.tensor([0.12, 0.01]))  # bins 1-4 and 8-9
    where = torch.full((11, 3), 0.5)  # candidates in the same voxel at t = 0, 0.1, ..., 1
    when = torch.linspace(0.0, 1.0, 11) + 0.01
    pick, _ = r._free_voxels(where, when, placed, placed_t, 1.0)
    assert pick.tolist() == [0, 5, 6, 7, 10]
