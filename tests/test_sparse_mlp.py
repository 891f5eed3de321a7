"""mlp_rows (backward over the rows that receive a gradient) against the plain autograd chain."""

import pytest
import torch

from splat4d.fields.sparse_mlp import mlp_reference, mlp_rows


def make(dims, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(o, i, generator=g, dtype=dtype) / i**0.5 for i, o in zip(dims[:-1], dims[1:])]
    bs = [torch.randn(o, generator=g, dtype=dtype) * 0.1 for o in dims[1:]]
    x = torch.randn(50, dims[0], generator=g, dtype=dtype)
    return x, ws, bs


@pytest.mark.parametrize("dims", [(8, 5), (8, 16, 6), (32, 64, 192, 10), (4, 7, 7, 7, 3)])
@pytest.mark.parametrize("zero_rows", ["none", "some", "all"])
@pytest.mark.parametrize("x_grad", [True, False])
def test_matches_reference(dims, zero_rows, x_grad):
    x, ws, bs = make(dims, torch.float64)
    up = torch.randn(50, dims[-1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if zero_rows == "some":
        up[::2] = 0.0
        up[1, 0] = 0.0  # a row with one zero entry still counts
    elif zero_rows == "all":
        up.zero_()
    res = []
    for fn in (mlp_rows, mlp_reference):
        xs = x.clone().requires_grad_(x_grad)
        w = [t.clone().requires_grad_() for t in ws]
        b = [t.clone().requires_grad_() for t in bs]
        out = fn(xs, w, b)
        (out * up).sum().backward()
        res.append((out.detach(), [xs.grad] + [t.grad for t in w + b]))
    (oa, ga), (ob, gb) = res
    torch.testing.assert_close(oa, ob, rtol=0, atol=0)
    for a, b in zip(ga, gb):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    x, ws, bs = make((5, 6, 4), torch.float64, seed=2)
    x[3] = 0.5  # away from the ReLU kinks with probability 1 anyway
    inputs = tuple(t.requires_grad_() for t in [x, *ws, *bs])
    assert torch.autograd.gradcheck(lambda x, w0, w1, b0, b1: mlp_rows(x, [w0, w1], [b0, b1]), inputs)
