"""Optimiser helpers: named Adam groups, learning-rate schedules, and editing per-Gaussian Adam state
when densification adds or removes Gaussians."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class ParamGroup:
    """One named group of parameters with its own learning-rate schedule.

    `lr_final` None keeps the rate constant; otherwise it decays log-linearly from `lr` to `lr_final`
    over `decay_steps` iterations (3DGS's exponential schedule). `per_gaussian` marks tensors whose first
    dimension is the Gaussian index (densification edits them)."""

    name: str
    params: list
    lr: float
    lr_final: float | None = None
    decay_steps: int = 30000
    per_gaussian: bool = False
    start: int = 0  # iteration at which the schedule starts (e.g. when a stage switches on)

    def lr_at(self, step: int) -> float:
        if self.lr_final is None:
            return self.lr
        s = min(max(step - self.start, 0) / max(self.decay_steps, 1), 1.0)
        return math.exp(math.log(self.lr) * (1 - s) + math.log(self.lr_final) * s)


def make_adam(groups: list[ParamGroup], fused: bool = False) -> torch.optim.Adam:
    """Adam over the named groups. `fused` uses torch's fused kernel (one pass per tensor instead of
    ~10 elementwise ops; ~3x faster on the CPU, equal up to float rounding)."""
    return torch.optim.Adam(
        [{"params": g.params, "lr": g.lr, "name": g.name} for g in groups if g.params], lr=0.0, eps=1e-15,
        fused=True if fused else None,
    )


def set_fused(opt: torch.optim.Optimizer, fused: bool) -> None:
    """Choose the fused kernel again after `load_state_dict`, which restores the saved groups' choice."""
    for pg in opt.param_groups:
        pg["fused"] = True if fused else None


def set_learning_rates(opt: torch.optim.Optimizer, groups: list[ParamGroup], step: int) -> None:
    by_name = {g.name: g for g in groups}
    for pg in opt.param_groups:
        pg["lr"] = by_name[pg["name"]].lr_at(step)


def replace_param(
    opt: torch.optim.Optimizer,
    old: torch.nn.Parameter,
    new: torch.nn.Parameter,
    edit_state: Callable[[Tensor], Tensor],
) -> None:
    """Swap `old` for `new` in the optimiser, editing its Adam moments with `edit_state`
    (e.g. index-select kept rows, or append zeros for new Gaussians)."""
    for pg in opt.param_groups:
        for i, p in enumerate(pg["params"]):
            if p is old:
                state = opt.state.pop(old, None)
                if state:
                    state = {k: (edit_state(v) if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in state.items()}
                    opt.state[new] = state
                pg["params"][i] = new
                return
    raise KeyError("parameter not found in optimiser")


def edit_rows(owner: torch.nn.Module, names: tuple[str, ...], opt: torch.optim.Optimizer,
              fn_param: Callable[[str, Tensor], Tensor], fn_state: Callable[[Tensor], Tensor]) -> None:
    """Replace the per-row Parameters `names` of `owner` (first dimension: one row per Gaussian, anchor,
    ...) by `fn_param(name, old values)`, and edit their Adam moments with `fn_state` (the same row
    selection / appending): the one place where densification and anchor refinement change a
    parameter's rows."""
    for name in names:
        old = getattr(owner, name)
        new = torch.nn.Parameter(fn_param(name, old.detach()).contiguous())
        setattr(owner, name, new)
        replace_param(opt, old, new, fn_state)
