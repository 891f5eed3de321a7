"""Plain fully connected network used by the deformation heads."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """x [..., in_dim] -> [..., out_dim].

    Layers: Linear(in, hidden), act, (Linear(hidden, hidden), act) * (depth - 1), Linear(hidden, out).
    ``depth`` is the number of hidden layers; depth 0 is a single Linear(in_dim, out_dim).

    Args:
        in_dim: input width.
        hidden: hidden width (unused when depth == 0).
        out_dim: output width.
        depth: number of hidden layers (>= 0).
        act: one of "relu", "silu", "gelu", "tanh", "softplus", "leaky_relu".
        out_init_zero: zero the last layer's weight and bias so the network starts as the zero map
            (deformation heads then begin at "no deformation").
    """

    def __init__(
        self, in_dim: int, hidden: int, out_dim: int, depth: int, act: str = "relu", out_init_zero: bool = False
    ):
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(_ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[act]()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.hidden, self.out_dim, self.depth = in_dim, hidden, out_dim, depth
        if out_init_zero:
            with torch.no_grad():
                self.out_layer.weight.zero_()
                self.out_layer.bias.zero_()

    @property
    def out_layer(self) -> nn.Linear:
        """The final Linear layer."""
        return self.net[-1]

    def forward(self, x: Tensor) -> Tensor:
        """x [..., in_dim] -> [..., out_dim]."""
        return self.net(x)
