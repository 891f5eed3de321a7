import pytest
import torch

from splat4d.fields.hexplane import (
    PAIRS,
    SPACE_PLANES,
    TIME_PLANES,
    HexPlane,
    plane_smoothness,
    plane_tv,
)

UNIT = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _fill(field: HexPlane, value: float = 1.0) -> None:
    with torch.no_grad():
        for planes in field.grids:
            for p in planes:
                p.fill_(value)


def _axis(n: int) -> torch.Tensor:
    """Grid coordinates in [-1, 1] of n texels under align_corners=True."""
    return torch.linspace(-1.0, 1.0, n, dtype=torch.float64)


def test_plane_order_and_shapes():
    f = HexPlane(UNIT, resolution=(4, 5, 6, 3), out_dim=8, multires=(1, 2))
    assert PAIRS == ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    assert SPACE_PLANES == (0, 1, 3) and TIME_PLANES == (2, 4, 5)
    for m, planes in zip((1, 2), f.grids):
        reso = (4 * m, 5 * m, 6 * m, 3)  # time resolution is not multiplied
        for p, (a, b) in zip(planes, PAIRS):
            assert p.shape == (1, 8, reso[b], reso[a])
    out = f(torch.rand(11, 3) * 2 - 1, torch.rand(11))
    assert out.shape == (11, 16) and f.feat_dim == 16


def test_init_time_planes_one_space_planes_uniform():
    torch.manual_seed(0)
    f = HexPlane(UNIT, resolution=(8, 8, 8, 5), out_dim=4, multires=(1, 2))
    tp, sp = list(f.time_planes()), list(f.space_planes())
    assert len(tp) == 6 and len(sp) == 6
    assert all(torch.all(p == 1.0) for p in tp)
    for p in sp:
        assert p.min() >= 0.1 and p.max() <= 0.5 and p.std() > 0.05


def test_t_forms_agree_and_defaults():
    f = HexPlane(UNIT, resolution=(4, 4, 4, 4), out_dim=2, multires=(1,))
    with torch.no_grad():
        for p in f.time_planes():
            p.uniform_(0.0, 1.0)
    xyz = torch.rand(5, 3) * 2 - 1
    a = f(xyz, torch.full((5,), 0.3))
    assert torch.allclose(a, f(xyz, torch.full((5, 1), 0.3)))
    assert torch.allclose(a, f(xyz, 0.3))
    assert torch.allclose(a, f(xyz, torch.tensor(0.3)))
    assert HexPlane(UNIT).feat_dim == 64
    with pytest.raises(ValueError):
        f(xyz, torch.zeros(4))


@pytest.mark.parametrize("which", [0, 1, 2, 3, 4, 5])
def test_linear_plane_reproduced_exactly(which):
    # a plane whose content is linear in its grid coordinates is reproduced exactly by bilinear interpolation
    res = (4, 6, 5, 7)  # all different so a transposed layout would fail
    f = HexPlane(UNIT, resolution=res, out_dim=2, multires=(1,)).double()
    _fill(f, 1.0)
    a, b = PAIRS[which]
    u = _axis(res[a])[None, :]  # first coordinate runs along W
    v = _axis(res[b])[:, None]  # second along H
    with torch.no_grad():
        f.grids[0][which][0, 0] = 2.0 + 0.5 * u - 0.3 * v
        f.grids[0][which][0, 1] = -1.0 + 0.25 * u + 0.75 * v
    torch.manual_seed(which)
    xyz = torch.rand(50, 3, dtype=torch.float64) * 2 - 1
    t = torch.rand(50, dtype=torch.float64)
    coords = torch.cat([xyz, (2 * t - 1)[:, None]], dim=-1)
    x, y = coords[:, a], coords[:, b]
    out = f(xyz, t)
    assert torch.allclose(out[:, 0], 2.0 + 0.5 * x - 0.3 * y, atol=1e-12)
    assert torch.allclose(out[:, 1], -1.0 + 0.25 * x + 0.75 * y, atol=1e-12)


def test_hand_bilinear_value_with_bounds():
    # xy plane: W = res_x = 3, H = res_y = 2; bounds x in [0, 2], y in [0, 4]
    f = HexPlane(torch.tensor([[0.0, 0.0, -5.0], [2.0, 4.0, 5.0]]), resolution=(3, 2, 2, 2), out_dim=1, multires=(1,))
    _fill(f, 1.0)
    P = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])  # P[row = y index, col = x index]
    with torch.no_grad():
        f.grids[0][0][0, 0] = P
    # x = 1.25 -> normalised 0.25 -> texel (0.25 + 1) / 2 * (3 - 1) = 1.25: cols 1, 2, weight 0.25
    # y = 1.0  -> normalised -0.5 -> texel (-0.5 + 1) / 2 * (2 - 1) = 0.25: rows 0, 1, weight 0.25
    want = 0.75 * 0.75 * 2.0 + 0.25 * 0.75 * 4.0 + 0.75 * 0.25 * 16.0 + 0.25 * 0.25 * 32.0
    out = f(torch.tensor([[1.25, 1.0, 0.0]]), 0.5)
    assert out.shape == (1, 1)
    assert torch.allclose(out[0, 0], torch.tensor(want))
    # on grid nodes the texel values come back exactly (align_corners=True: box corners are texel centres)
    nodes = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 4.0, 0.0], [2.0, 4.0, 0.0]])
    assert torch.allclose(f(nodes, 0.0)[:, 0], torch.tensor([1.0, 4.0, 16.0, 32.0]))
    # outside the box the border value is read
    assert torch.allclose(f(torch.tensor([[9.0, -3.0, 0.0]]), 0.0)[0, 0], torch.tensor(4.0))


def test_hand_bilinear_time_plane():
    # yt plane: W = res_y = 2, H = res_t = 3; t = 0.75 -> normalised 0.5 -> texel 1.5
    f = HexPlane(UNIT, resolution=(2, 2, 2, 3), out_dim=1, multires=(1,))
    _fill(f, 1.0)
    P = torch.tensor([[1.0, 3.0], [5.0, 7.0], [9.0, 20.0]])  # [t index, y index]
    with torch.no_grad():
        f.grids[0][4][0, 0] = P
    # y = 0.5 -> texel 0.75
    want = 0.5 * (0.25 * 5.0 + 0.75 * 7.0) + 0.5 * (0.25 * 9.0 + 0.75 * 20.0)
    out = f(torch.tensor([[0.3, 0.5, -0.2]]), torch.tensor([0.75]))
    assert torch.allclose(out[0, 0], torch.tensor(want))


def test_product_across_planes_and_scales():
    f = HexPlane(UNIT, resolution=(4, 4, 4, 3), out_dim=3, multires=(1, 2))
    _fill(f, 1.0)
    with torch.no_grad():
        for planes in f.grids:
            planes[1].fill_(2.0)  # xz
            planes[4].fill_(3.0)  # yt
    out = f(torch.rand(7, 3) * 4 - 2, torch.rand(7))
    assert out.shape == (7, 6)
    assert torch.allclose(out, torch.full_like(out, 6.0))


def test_set_bounds_changes_normalisation():
    f = HexPlane(UNIT, resolution=(5, 2, 2, 2), out_dim=1, multires=(1,))
    _fill(f, 1.0)
    with torch.no_grad():
        f.grids[0][0][0, 0] = _axis(5).float()[None, :].expand(2, 5)  # xy plane = normalised x
    x = torch.tensor([[3.0, 0.0, 0.0]])
    assert torch.allclose(f(x, 0.0), torch.tensor([[1.0]]))  # clamped at the border of [-1, 1]
    f.set_bounds(torch.tensor([[2.0, -1.0, -1.0], [6.0, 1.0, 1.0]]))
    assert torch.allclose(f(x, 0.0), torch.tensor([[-0.5]]))
    assert "bounds" in f.state_dict()
    with pytest.raises(ValueError):
        f.set_bounds(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]))
    with pytest.raises(ValueError):
        HexPlane(torch.zeros(3))


P3 = torch.tensor([[0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [2.0, 0.0, 4.0]])
# first differences along H: [1,0,-2], [1,-1,3] -> sum sq 16 over 6; along W: (1,2), (0,0), (-2,4) -> 25 over 6
P3_TV = 2.0 * (16.0 / 6.0 + 25.0 / 6.0)
# second difference along H: row2 - 2 row1 + row0 = [0, -1, 5] -> mean sq 26 / 3 (along W it would be 37 / 3)
P3_SMOOTH = 26.0 / 3.0
# |1 - P|: 1,0,2, 0,0,0, 1,1,3 -> 8 / 9
P3_L1 = 8.0 / 9.0


def test_regulariser_functions_by_hand():
    p = P3[None, None]
    assert torch.allclose(plane_tv(p), torch.tensor(P3_TV))
    assert torch.allclose(plane_smoothness(p), torch.tensor(P3_SMOOTH))
    assert plane_smoothness(torch.rand(1, 2, 2, 5)) == 0.0  # fewer than 3 time samples
    lin = torch.arange(4.0)[:, None].expand(4, 3)[None, None] * 0.7  # linear in time: no curvature
    assert torch.allclose(plane_smoothness(lin), torch.tensor(0.0))


def test_regulariser_methods_by_hand():
    f = HexPlane(UNIT, resolution=(3, 3, 3, 3), out_dim=1, multires=(1,))
    _fill(f, 1.0)
    assert f.plane_tv() == 0 and f.time_smoothness() == 0 and f.time_l1() == 0
    with torch.no_grad():
        f.grids[0][0][0, 0] = P3  # xy (spatial)
        f.grids[0][2][0, 0] = P3  # xt (time): rows are time
    assert torch.allclose(f.plane_tv(), torch.tensor(P3_TV))
    assert torch.allclose(f.time_smoothness(), torch.tensor(P3_SMOOTH))
    assert torch.allclose(f.time_l1(), torch.tensor(P3_L1))
    # summed over planes and scales
    g = HexPlane(UNIT, resolution=(3, 3, 3, 3), out_dim=1, multires=(1, 2))
    _fill(g, 1.0)
    with torch.no_grad():
        g.grids[0][5][0, 0] = P3  # zt, scale 1 (z res 3)
        g.grids[1][4][0, 0, :, :3] = P3  # yt, scale 2 (y res 6): left half = P3, right half = 1
    assert torch.allclose(g.time_l1(), torch.tensor(P3_L1 + P3_L1 / 2))
    # the second difference of the right half is 0, so the mean halves as well
    assert torch.allclose(g.time_smoothness(), torch.tensor(P3_SMOOTH + P3_SMOOTH / 2))


def test_gradients_reach_every_plane():
    torch.manual_seed(1)
    f = HexPlane(UNIT, resolution=(4, 4, 4, 3), out_dim=2, multires=(1, 2))
    xyz = (torch.rand(64, 3) * 2 - 1).requires_grad_(True)
    f(xyz, torch.rand(64)).square().sum().backward()
    for planes in f.grids:
        for p in planes:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert xyz.grad is not None and xyz.grad.abs().sum() > 0
    f.zero_grad()
    with torch.no_grad():
        for p in f.time_planes():
            p.uniform_(0.5, 1.5)
    (f.plane_tv() + f.time_smoothness() + f.time_l1()).backward()
    assert all(p.grad.abs().sum() > 0 for p in f.space_planes())
    assert all(p.grad.abs().sum() > 0 for p in f.time_planes())


def test_empty_batch():
    f = HexPlane(UNIT, resolution=(4, 4, 4, 3), out_dim=2, multires=(1, 2))
    assert f(torch.zeros(0, 3), torch.zeros(0)).shape == (0, 4)
