"""Adaptive density control for a `Gaussians` set (clone / split / prune / opacity reset), as in 3DGS
and gsplat's default strategy. It knows Gaussians and the optimiser, nothing about methods.

Screen-space gradients: the rasterizer's meta["means2d"].grad, scaled to NDC units (x W/2, x H/2 per
camera) so the threshold 0.0002 means what it means in 3DGS, averaged over the iterations in which
each Gaussian was visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from splat4d.gaussians import Gaussians
from splat4d.render.projection import quat_to_rotmat
from splat4d.train import distributed
from splat4d.train.optim import edit_rows, replace_param


@dataclass
class DensifyConfig:
    """When and how Gaussians are grown and pruned."""

    start: int = 500
    """First iteration that may grow or prune."""
    stop: int = 15000
    """No growing, pruning or opacity reset from this iteration on (nor past half of the training, so a
    run always has time to recover from the last reset)."""
    every: int = 100
    """Grow/prune every this many iterations."""
    grad_threshold: float = 0.0
    """Average NDC-space 2D-mean gradient above which a Gaussian is cloned (small) or split (large).
    0: chosen from the scene (`auto_grad_threshold`): 3DGS's 2e-4 when several cameras see each time
    step, 5e-5 for monocular captures."""
    grow_scale3d: float = 0.01
    """Largest scale, as a fraction of the scene extent, below which a Gaussian is cloned rather than split."""
    prune_opacity: float = 0.005
    """Gaussians less opaque than this are removed."""
    prune_scale3d: float = 0.1
    """After the first opacity reset, Gaussians larger than this fraction of the scene extent are removed."""
    reset_every: int = 3000
    """Reset opacities to 2 x prune_opacity every this many iterations (0: never)."""
    grow_fraction: float = 0.0
    """When > 0, grow this fraction of the Gaussians seen since the last growth, those with the highest
    average gradient (DreamGaussian4D / STAG4D / DS4D: the top 2.5 %), instead of those above
    grad_threshold."""
    max_gaussians: int = 0
    """Never grow beyond this many Gaussians (0: from the scene, `auto_max_gaussians`)."""
    clone_t_scale: float = 0.05
    """Gaussians with a temporal opacity only: a clone is centred at the time of the view in which its
    parent's gradient was largest, with a temporal standard deviation of at most this (fraction of the
    clip), so it can take on what is there at that time without disturbing other times."""

    def validate(self, prefix: str = "method.densify") -> None:
        """Raise ConfigError naming the first setting out of range (see splat4d.config_checks)."""
        from splat4d.config_checks import check_float, check_int
        from splat4d.errors import ConfigError

        check_int(f"{prefix}.start", self.start, 0)
        check_int(f"{prefix}.stop", self.stop, 0)
        check_int(f"{prefix}.every", self.every, 1)
        check_float(f"{prefix}.grad_threshold", self.grad_threshold, 0)
        check_float(f"{prefix}.grow_scale3d", self.grow_scale3d, 0)
        check_float(f"{prefix}.prune_opacity", self.prune_opacity, 0, 1, hi_open=True)
        check_float(f"{prefix}.prune_scale3d", self.prune_scale3d, 0, lo_open=True)
        check_int(f"{prefix}.reset_every", self.reset_every, 0)
        check_float(f"{prefix}.grow_fraction", self.grow_fraction, 0, 1)
        check_int(f"{prefix}.max_gaussians", self.max_gaussians, 0)
        check_float(f"{prefix}.clone_t_scale", self.clone_t_scale, 0, lo_open=True)
        if self.reset_every and self.prune_opacity >= 0.5:  # the reset sets opacities to 2 x prune_opacity
            raise ConfigError(f"{prefix}.prune_opacity must be in [0, 0.5) when {prefix}.reset_every > 0 "
                              f"(opacities are reset to twice it), got {self.prune_opacity}")


MULTIVIEW_GRAD_THRESHOLD = 2e-4
MONOCULAR_GRAD_THRESHOLD = 5e-5


def auto_grad_threshold(views_per_time: float) -> float:
    """Growth threshold for a scene with this many training views per time step.

    With one camera per time step, a Gaussian on a moving object gets large screen-space gradients only
    in the few views near its time, while the statistic is a mean over every view that sees it: 3DGS's
    2e-4 then grows nothing on the moving parts (D-NeRF collision: both deformable and static settle on
    the white background; with 5e-5 deformable reaches +3.7 dB over static, docs/benchmarks.md)."""
    return MONOCULAR_GRAD_THRESHOLD if views_per_time < 2 else MULTIVIEW_GRAD_THRESHOLD


MIN_CONTRIBUTION = 0.5
"""Blend weight (in pixels: alpha x transmittance summed over a view) below which a faint Gaussian counts
as unseen in that view."""
GAUSSIANS_PER_FOREGROUND_PIXEL = 4
MAX_GAUSSIANS = 300_000


def auto_max_gaussians(foreground_pixels_per_view: float, initial: int) -> int:
    """Growth cap in proportion to what one image can show: 4 Gaussians per foreground pixel (one that
    differs from the background) of an average training view, at most 300k, and never below the initial
    count. Uncapped, a monocular capture's low growth threshold grew 158k Gaussians for one ball in a
    200x200 image (and training fell from 7 to 0.6 it/s) without a better picture."""
    cap = int(GAUSSIANS_PER_FOREGROUND_PIXEL * foreground_pixels_per_view)
    return max(min(cap, MAX_GAUSSIANS), int(initial), 1)


class DensifyStrategy:
    """Grows, prunes and resets one `Gaussians` set on the schedule of a `DensifyConfig`.

    Its statistics live on the device of the Gaussians they describe (allocated lazily from the first
    gradients), and so does the generator that places split children: one generator per device type,
    seeded alike, so nothing crosses between host and device. In a data-parallel run the statistics are
    summed over ranks before every decision, so all ranks grow and prune identically.

    Examples:
        >>> strategy = DensifyStrategy(DensifyConfig(), scene_extent=2.0)
        >>> # per iteration, after loss.backward():
        >>> strategy.after_backward(gaussians, [out.meta for out in outs], step)
        >>> # after optimizer.step():
        >>> logs = strategy.after_step(gaussians, optimizer, step + 1)
    """

    def __init__(self, cfg: DensifyConfig, scene_extent: float, seed: int = 0):
        self.cfg = cfg
        self.extent = float(scene_extent)
        self.grad2d: Tensor | None = None  # [N] summed per-view NDC gradient norms
        self.count: Tensor | None = None  # [N] views in which each Gaussian was visible
        self.contribution: Tensor | None = None  # [N] largest blend weight in one view (when renders give it)
        self.peak: Tensor | None = None  # [N] largest per-view gradient norm (renders that give meta["time"])
        self.peak_time: Tensor | None = None  # [N] time of that view
        self.seed = seed
        self.gens: dict[str, torch.Generator] = {}
        self._pending_gen_states: dict[str, Tensor] = {}
        self.total_steps: int | None = None

    @property
    def stop(self) -> int:
        return self.cfg.stop if self.total_steps is None else min(self.cfg.stop, self.total_steps // 2)

    def generator(self, device: torch.device) -> torch.Generator:
        """This strategy's generator for `device` (created on first use, or restored from a checkpoint)."""
        key = torch.device(device).type
        if key not in self.gens:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            if key in self._pending_gen_states:
                gen.set_state(self._pending_gen_states.pop(key))
            self.gens[key] = gen
        return self.gens[key]

    # ------------------------------------------------------------ bookkeeping
    def state_dict(self) -> dict:
        gens = {**self._pending_gen_states, **{k: g.get_state() for k, g in self.gens.items()}}
        return {"grad2d": self.grad2d, "count": self.count, "contribution": self.contribution, "gens": gens,
                "extent": self.extent, "peak": self.peak, "peak_time": self.peak_time}

    def load_state_dict(self, state: dict) -> None:
        self.grad2d, self.count, self.extent = state["grad2d"], state["count"], state["extent"]
        self.contribution = state.get("contribution")
        self.peak, self.peak_time = state.get("peak"), state.get("peak_time")
        self.gens = {}
        # checkpoints before per-device generators held one CPU generator under "gen"
        self._pending_gen_states = dict(state["gens"]) if "gens" in state else {"cpu": state["gen"]}

    def to(self, device: torch.device) -> "DensifyStrategy":
        """Move the statistics to `device` (the Gaussians' device)."""
        if self.grad2d is not None:
            self.grad2d, self.count = self.grad2d.to(device), self.count.to(device)
        if self.contribution is not None:
            self.contribution = self.contribution.to(device)
        if self.peak is not None:
            self.peak, self.peak_time = self.peak.to(device), self.peak_time.to(device)
        return self

    def after_backward(self, gaussians: Gaussians, metas: list[dict], step: int) -> None:
        """Accumulate the screen-space gradient of every Gaussian seen in this iteration's renders.

        The loss averages over the B views it sees (one render of B cameras, or B renders of one), so
        each view's gradient is B times smaller than if it were alone: multiplying by B makes the
        statistic a per-view gradient whatever the batch size (as gsplat does with n_cameras), and
        equal between a process with batch B x R and R data-parallel ranks of batch B."""
        if step >= self.stop:
            return
        n = len(gaussians)
        device = gaussians.means.device
        if self.grad2d is not None and self.grad2d.device != device:  # resumed from a CPU checkpoint
            self.to(device)
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self.grad2d = torch.zeros(n, device=device)
            self.count = torch.zeros(n, device=device)
        weights = [m["weights"] for m in metas if m.get("weights") is not None]
        if weights:
            most = torch.cat(weights).amax(0).to(device)
            if self.contribution is None or self.contribution.shape[0] != n:
                self.contribution = torch.zeros(n, device=device)
            self.contribution = torch.maximum(self.contribution, most)
        views = sum(meta["means2d"].shape[0] for meta in metas)
        for meta in metas:
            m2d = meta["means2d"]
            if m2d.grad is None:
                continue
            g = m2d.grad.detach()  # [C, N, 2]
            scale = torch.tensor([meta["width"] / 2.0, meta["height"] / 2.0], dtype=g.dtype, device=g.device)
            norms = (g * (scale * views)).norm(dim=-1)  # [C, N]
            vis = meta["visible"]  # [C, N]
            seen = torch.where(vis, norms, torch.zeros_like(norms))
            self.grad2d += seen.sum(0).to(self.grad2d)
            self.count += vis.sum(0).to(self.count)
            if "time" in meta:
                self._track_peak(seen.amax(0).to(self.grad2d), float(meta["time"]))

    def _track_peak(self, norms: Tensor, t: float) -> None:
        """Remember each Gaussian's largest per-view gradient [N] and the time of that view."""
        if self.peak is None or self.peak.shape[0] != norms.shape[0]:
            self.peak = torch.zeros_like(norms)
            self.peak_time = torch.zeros_like(norms)
        higher = norms > self.peak
        self.peak = torch.where(higher, norms, self.peak)
        self.peak_time = torch.where(higher, torch.full_like(norms, t), self.peak_time)

    def after_step(self, gaussians: Gaussians, opt: torch.optim.Optimizer, step: int) -> dict:
        """Grow, prune and reset on schedule; returns counts of what happened (empty when nothing did)."""
        c = self.cfg
        logs: dict = {}
        if step >= self.stop or step < c.start:
            return logs
        if step % c.every == 0 and step > c.start and self.grad2d is not None:
            distributed.all_reduce_sum_(self.grad2d)
            distributed.all_reduce_sum_(self.count)
            contribution = self.contribution
            if contribution is not None:  # the largest over ranks
                distributed.all_reduce_max_(contribution)
            if self.peak is not None:  # the time of the largest over ranks
                local = self.peak.clone()
                distributed.all_reduce_max_(self.peak)
                self.peak_time = torch.where(local >= self.peak, self.peak_time, torch.full_like(self.peak_time, -1.0))
                distributed.all_reduce_max_(self.peak_time)
            if contribution is None:
                logs.update(self.grow(gaussians, opt))
                logs.update(self.prune(gaussians, opt, step))
            else:  # the contribution describes the Gaussians before growth: prune first, then grow the rest
                logs.update(self.prune(gaussians, opt, step, contribution))
                logs.update(self.grow(gaussians, opt))
            self.grad2d = self.count = self.contribution = self.peak = self.peak_time = None
        if c.reset_every and step % c.reset_every == 0 and step > 0:
            self.reset_opacity(gaussians, opt)
            logs["reset"] = True
        return logs

    # ------------------------------------------------------------ operations
    @torch.no_grad()
    def grow(self, gaussians: Gaussians, opt) -> dict:
        """Clone small and split large Gaussians whose average gradient passes the threshold; when the
        cap leaves room for fewer, the highest-gradient candidates grow."""
        c = self.cfg
        avg = self.grad2d / self.count.clamp_min(1)
        if c.grow_fraction > 0:
            seen = (self.count > 0) & (avg > 0)
            high = _top(seen, avg, math.ceil(c.grow_fraction * int(seen.sum())))
        else:
            high = avg > (c.grad_threshold or MULTIVIEW_GRAD_THRESHOLD)
        high = _top(high, avg, max((c.max_gaussians or MAX_GAUSSIANS) - len(gaussians), 0))
        small = gaussians.scales.max(dim=-1).values <= c.grow_scale3d * self.extent
        clone, split = high & small, high & ~small
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            sel = clone.nonzero()[:, 0]
            self._edit(gaussians, opt, lambda k, p: torch.cat([p, self._cloned(k, p, sel)]),
                       lambda s: torch.cat([s, torch.zeros_like(s[sel])]))
        if n_split:
            split = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
            self._split(gaussians, opt, split)
        return {"cloned": n_clone, "split": n_split}

    @torch.no_grad()
    def prune(self, gaussians: Gaussians, opt, step: int, contribution: Tensor | None = None) -> dict:
        """Remove Gaussians below prune_opacity (and, after the first reset, too large ones). With
        `contribution` (each Gaussian's largest blend weight in one view since the last decision, from
        renders made with return_weights, as a method whose opacity changes over time makes them), a
        faint Gaussian is kept while it still covered half a pixel somewhere: its canonical opacity is
        not what is rendered at every time."""
        c = self.cfg
        drop = gaussians.opacities < c.prune_opacity
        if contribution is not None and contribution.shape[0] == drop.shape[0]:
            drop &= contribution.to(drop.device) < MIN_CONTRIBUTION
        if c.reset_every and step > c.reset_every:
            drop |= gaussians.scales.max(dim=-1).values > c.prune_scale3d * self.extent
        if drop.all():  # never leave an empty model
            drop[gaussians.opacities.argmax()] = False
        n = int(drop.sum())
        if n:
            keep = ~drop
            self._edit(gaussians, opt, lambda k, p: p[keep], lambda s: s[keep])
            if self.grad2d is not None and self.grad2d.shape[0] == keep.shape[0]:
                self.grad2d, self.count = self.grad2d[keep], self.count[keep]
            if self.peak is not None and self.peak.shape[0] == keep.shape[0]:
                self.peak, self.peak_time = self.peak[keep], self.peak_time[keep]
        return {"pruned": n}

    @torch.no_grad()
    def reset_opacity(self, gaussians: Gaussians, opt) -> None:
        p = 2 * self.cfg.prune_opacity
        cap = math.log(p / (1 - p))
        old = gaussians.opacity_logits
        new = gaussians.replace({"opacity_logits": old.clamp_max(cap)})["opacity_logits"]
        replace_param(opt, old, new, torch.zeros_like)

    def _cloned(self, name: str, p: Tensor, sel: Tensor) -> Tensor:
        """Values of the clones of Gaussians `sel` for field `name`: copies, except that a temporal opacity
        is centred at the time of the parent's largest gradient and at most clone_t_scale wide."""
        if self.peak_time is None or self.peak_time.shape[0] != p.shape[0]:
            return p[sel]
        if name == "t_means":
            return self.peak_time.to(p)[sel]
        if name == "t_log_scales":
            return p[sel].clamp_max(math.log(self.cfg.clone_t_scale))
        return p[sel]

    def _split(self, gaussians: Gaussians, opt, split: Tensor) -> None:
        sel = split.nonzero()[:, 0]
        rest = ~split
        scales = gaussians.scales[sel]
        R = quat_to_rotmat(gaussians.quats[sel])
        device = scales.device
        noise = torch.randn(2, len(sel), 3, generator=self.generator(device), device=device)
        offsets = torch.einsum("nij,bnj->bni", R, scales[None] * noise)  # [2, S, 3]

        def new_values(k, p):
            if k == "means":
                v = (p[sel][None] + offsets).reshape(-1, 3)
            elif k == "log_scales":
                v = torch.log(scales / 1.6).repeat(2, 1)
            else:
                v = p[sel].repeat((2,) + (1,) * (p.dim() - 1))
            return torch.cat([p[rest], v])

        self._edit(gaussians, opt, new_values, lambda s: torch.cat([s[rest], torch.zeros_like(s[sel]).repeat((2,) + (1,) * (s.dim() - 1))]))

    def _edit(self, gaussians: Gaussians, opt, fn_param, fn_state) -> None:
        edit_rows(gaussians, gaussians.fields, opt, fn_param, fn_state)


def _top(mask: Tensor, score: Tensor, room: int) -> Tensor:
    """Keep at most `room` True entries of mask: those with the highest score."""
    if int(mask.sum()) <= room:
        return mask
    idx = torch.where(mask, score, torch.full_like(score, -math.inf)).topk(room).indices
    out = torch.zeros_like(mask)
    out[idx] = True
    return out
