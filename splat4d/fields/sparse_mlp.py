"""A ReLU MLP whose backward only touches the rows that receive a gradient.

The deformation network runs on every Gaussian, but a view's loss reaches only the Gaussians that
touch one of its pixels (a third of them early in a D-NeRF run, fewer later): every other row of the
network's output gets an exactly-zero gradient and contributes nothing to any weight or input
gradient. `mlp_rows` computes the usual forward, keeps the pre-activations, and in the backward
gathers the rows whose output gradient is non-zero and runs the matrix products on those alone.
Gradients are those of the plain chain (`mlp_reference`, its twin) up to summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mlp_reference(x: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    """x [N, d0] -> Linear, ReLU, Linear, ..., Linear (no activation after the last): plain autograd."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = F.linear(x, w, b)
        if i < len(weights) - 1:
            x = F.relu(x)
    return x


class _MLPRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, n_layers: int, *wb: Tensor) -> Tensor:
        weights, biases = wb[:n_layers], wb[n_layers:]
        acts = []  # hidden activations relu(pre) (relu(a) > 0 exactly where a > 0: all the backward needs)
        h = x
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = F.linear(h, w, b)
            if i < n_layers - 1:
                h = h.relu_()
                acts.append(h)
        ctx.save_for_backward(x, *weights, *acts)
        ctx.n_layers = n_layers
        return h

    @staticmethod
    def backward(ctx, g_out: Tensor):
        n = ctx.n_layers
        saved = ctx.saved_tensors
        x, weights, acts = saved[0], saved[1 : 1 + n], saved[1 + n :]
        rows = torch.nonzero(g_out.ne(0).any(dim=1)).squeeze(1)
        every = rows.numel() == g_out.shape[0]
        g = g_out if every else g_out.index_select(0, rows)
        g_w, g_b = [None] * n, [None] * n
        for i in range(n - 1, -1, -1):
            if i > 0:
                inp = acts[i - 1] if every else acts[i - 1].index_select(0, rows)
            else:
                inp = x if every else x.index_select(0, rows)
            g_w[i] = g.t() @ inp
            g_b[i] = g.sum(0)
            if i > 0 or ctx.needs_input_grad[0]:
                g = g @ weights[i]
                if i > 0:
                    g = g * (inp > 0)
        g_x = None
        if ctx.needs_input_grad[0]:
            g_x = g if every else torch.zeros_like(x).index_copy_(0, rows, g)
        return (g_x, None, *g_w, *g_b)


def mlp_rows(x: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    """The MLP of `mlp_reference` (weights [out, in], biases [out]; rows of x [N, d0] independent), with a
    backward restricted to the rows whose output gradient is non-zero."""
    return _MLPRows.apply(x, len(weights), *weights, *biases)
