import math

import pytest
import torch

from splat4d.fields.encodings import (
    TimeTable,
    positional_encoding,
    positional_encoding_dim,
)
from splat4d.fields.mlp import MLP


def test_positional_encoding_shape():
    x = torch.rand(4, 5, 3)
    assert positional_encoding(x, 4).shape == (4, 5, 3 * 9)
    assert positional_encoding(x, 12, include_input=False).shape == (4, 5, 72)
    assert positional_encoding(x, 0).shape == (4, 5, 3)
    assert positional_encoding_dim(3, 12, False) == 72 and positional_encoding_dim(3, 4) == 27


def test_positional_encoding_values_and_order():
    x = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    out = positional_encoding(x, 2)
    a, b = 0.25, -0.5
    want = [a, b]
    for k in range(2):
        f = math.pi * 2**k
        want += [math.sin(f * a), math.sin(f * b), math.cos(f * a), math.cos(f * b)]
    assert torch.allclose(out[0], torch.tensor(want, dtype=torch.float64))
    assert torch.allclose(positional_encoding(x, 2, include_input=False), out[:, 2:])


def test_positional_encoding_gradient():
    x = torch.tensor([0.1], requires_grad=True)
    positional_encoding(x, 1, include_input=False)[0].backward()  # d/dx sin(pi x)
    assert torch.allclose(x.grad, torch.tensor([math.pi * math.cos(math.pi * 0.1)]))


def test_time_table_nodes_and_midpoints():
    tt = TimeTable(frames=5, dim=3)
    with torch.no_grad():
        tt.table.copy_(torch.arange(15.0).view(5, 3) ** 2)
    Z = tt.table.detach()
    t = torch.arange(5.0) / 4
    assert torch.allclose(tt(t), Z)
    assert torch.allclose(tt(0.0), Z[0]) and torch.allclose(tt(1.0), Z[-1])
    mid = (torch.arange(4.0) + 0.5) / 4
    assert torch.allclose(tt(mid), 0.5 * (Z[:-1] + Z[1:]))
    # t = 0.3 -> position 1.2: 0.8 row 1 + 0.2 row 2
    assert torch.allclose(tt(torch.tensor([0.3])), (0.8 * Z[1] + 0.2 * Z[2])[None], atol=1e-5)
    assert torch.allclose(tt(torch.tensor([-0.5, 2.0])), Z[[0, 4]])  # clamped
    assert tt(torch.rand(2, 7)).shape == (2, 7, 3)
    assert tt(torch.rand(6, 1)).shape == (6, 1, 3)


def test_time_table_gradients():
    tt = TimeTable(frames=4, dim=2)
    t = torch.tensor([0.5], requires_grad=True)  # position 1.5
    tt(t).sum().backward()
    want = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])
    assert torch.allclose(tt.table.grad, want)
    Z = tt.table.detach()
    assert torch.allclose(t.grad, 3 * (Z[2] - Z[1]).sum()[None])  # d/dt of the slope


def test_time_table_single_frame_and_errors():
    tt = TimeTable(frames=1, dim=4)
    assert torch.allclose(tt(torch.rand(3)), tt.table.detach().expand(3, 4))
    with pytest.raises(ValueError):
        TimeTable(frames=0, dim=4)


# MLP (splat4d/fields/mlp.py) has its tests here to keep the fields' small parts together.
def test_mlp_depths_and_shapes():
    m0 = MLP(5, 64, 3, depth=0)
    assert len(m0.net) == 1 and m0.net[0].in_features == 5 and m0.net[0].out_features == 3
    m2 = MLP(5, 16, 3, depth=2, act="silu")
    lin = [l for l in m2.net if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(5, 16), (16, 16), (16, 3)]
    assert isinstance(m2.net[1], torch.nn.SiLU)
    assert m2(torch.rand(2, 7, 5)).shape == (2, 7, 3)
    x = torch.rand(4, 5)
    want = lin[2](torch.relu(lin[1](torch.relu(lin[0](x)))))
    m2r = MLP(5, 16, 3, depth=2)
    m2r.load_state_dict(m2.state_dict())
    assert torch.allclose(m2r(x), want)
    with pytest.raises(ValueError):
        MLP(5, 16, 3, depth=1, act="nope")


def test_mlp_zero_output_init_still_learns():
    m = MLP(4, 8, 2, depth=1, out_init_zero=True)
    x = torch.rand(10, 4)
    assert torch.all(m(x) == 0)
    (m(x) - 1).square().sum().backward()
    assert m.out_layer.weight.grad.abs().sum() > 0


def test_time_table_smooth_init_correlates_neighbouring_rows():
    torch.manual_seed(0)
    white = TimeTable(frames=60, dim=256, init_std=1.0).table.detach()
    torch.manual_seed(0)
    smooth = TimeTable(frames=60, dim=256, init_std=1.0, init_smooth=3.0).table.detach()

    def neighbour_corr(z):
        a, b = z[:-1] - z.mean(0), z[1:] - z.mean(0)
        return float((a * b).sum() / (a.norm() * b.norm()))

    assert abs(neighbour_corr(white)) < 0.1
    assert neighbour_corr(smooth) > 0.9  # a Gaussian blur of sigma 3 rows: exp(-1/36) ~ 0.97
    assert torch.allclose(smooth.std(0), torch.ones(256), atol=1e-4)  # the spread is kept per column
    assert TimeTable(frames=2, dim=4, init_smooth=5.0).table.isfinite().all()
    with pytest.raises(ValueError):
        TimeTable(frames=4, dim=4, init_smooth=-1.0)
