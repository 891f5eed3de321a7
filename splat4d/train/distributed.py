"""Data-parallel training with `torch.distributed`, started by `torchrun` (NCCL on GPUs, gloo on CPU).

Every rank holds the same model and draws the same views; each renders its share of the global batch.
Gradients and densification statistics are summed over ranks, so every rank takes the same optimiser
step and makes the same densification decision; only rank 0 writes files.

Without torchrun (no WORLD_SIZE, or WORLD_SIZE=1) every function here is a no-op for a single process.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from splat4d.errors import ConfigError


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def env_rank() -> int:
    """RANK set by torchrun (0 when not launched by it); readable before the process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"RANK must be an integer, got {os.environ['RANK']!r}") from None


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (once) and return this rank's device: cuda:LOCAL_RANK
    for a CUDA run, else `device` unchanged. A single process returns `device` and starts nothing."""
    if env_world_size() == 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return device


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, the one that writes checkpoints, logs and outputs."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum_(t: Tensor) -> Tensor:
    """Sum `t` over ranks, in place; returns it."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max_(t: Tensor) -> Tensor:
    """Element-wise maximum of `t` over ranks, in place; returns it."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags over ranks (one small collective)."""
    if not active():
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    all_reduce_sum_(t)
    return [bool(v > 0) for v in t.tolist()]


def average_gradients(params: list[Tensor]) -> None:
    """Average .grad over ranks. A parameter without a gradient on every rank (a stage not yet switched
    on) keeps None, so Adam skips it exactly as a single process would; one that has a gradient on some
    rank only gets zeros elsewhere before the sum."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    has = any_rank([p.grad is not None for p in params], params[0].device if params else torch.device("cpu"))
    grads = []
    for p, h in zip(params, has):
        if h and p.grad is None:
            p.grad = torch.zeros_like(p)
        if h:
            grads.append(p.grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum_(flat).div_(world_size())
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
