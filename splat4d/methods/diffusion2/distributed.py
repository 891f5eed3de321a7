"""The image-matrix sampler sharded over `torch.distributed` ranks (launched with `torchrun`; NCCL on GPUs,
gloo on CPU). Every rank holds the whole matrix and draws the same noise from the same seed; in each step rank
r denoises rows r, r + W, … with the video prior and columns r, r + W, … with the multi-view prior, and one
all-reduce sums the shares of the Euler direction. Outside a process group it is the one-process sampler."""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch import Tensor

from splat4d.methods.diffusion2.sampler import MatrixTerms, sample_image_matrix
from splat4d.train import distributed as ddp


class ShardedTerms(MatrixTerms):
    def reduce(self, d: Tensor) -> Tensor:
        return ddp.all_reduce_sum_(d)


def _share(make, owner: int, shape: tuple, device, dtype) -> Tensor:
    """Run `make` on rank `owner` (modulo the world size) and broadcast its result to every rank."""
    src = owner % ddp.world_size()
    out = make().contiguous() if ddp.rank() == src else torch.empty(shape, device=device, dtype=dtype)
    dist.broadcast(out, src)
    return out


def sample_image_matrix_distributed(video_denoiser, multiview_denoiser, views: int, frames: int, shape, **kwargs) -> Tensor:
    """`sample_image_matrix` with rows and columns split across the ranks of the current process group; the
    same arguments and seed give the same matrix as one process (every rank returns it)."""
    if not ddp.active():
        return sample_image_matrix(video_denoiser, multiview_denoiser, views, frames, shape, **kwargs)
    rank, world = ddp.rank(), ddp.world_size()
    refs = [kwargs.get(k) for k in ("ref_views", "ref_video", "image")]
    device = kwargs.get("device") or next((t.device for t in refs if t is not None), torch.device("cpu"))
    kwargs["device"] = device
    dtype = kwargs.get("dtype", torch.float32)
    rows = torch.arange(rank, views, world, device=device)
    cols = torch.arange(rank, frames, world, device=device)
    terms = functools.partial(ShardedTerms, rows=rows, cols=cols)
    share = functools.partial(_share, device=device, dtype=dtype)
    return sample_image_matrix(video_denoiser, multiview_denoiser, views, frames, shape, _shard=(terms, share), **kwargs)
