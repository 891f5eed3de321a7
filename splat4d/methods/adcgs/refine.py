"""ADC-GS's anchor refinement with temporal significance (paper eq. 11).

Each primitive's 2D position gradient is weighted by its alpha-blending weight Psi(k, t) in the view that
produced it (`rasterize(..., return_weights=True)`), and accumulated over the views between refinements:
grad_k = sum Psi ||grad_k,t|| / sum Psi. Where grad_k passes the growth threshold, the primitive's place
becomes a new anchor (its voxel, unless one is there already), inheriting its parent anchor's features.
Anchors none of whose primitives reached `prune_opacity` in a view since the last refinement are pruned.
With a temporal opacity a new anchor is centred at the mean time of its parent primitive's weighted
gradients and is twice their spread in time wide (at least `clone_t_scale`, at most its parent's width):
content needed at one moment (a monocular capture's moving object) grows anchors narrow in time, content
needed all along (a floor seen by every camera at every time) grows anchors that serve every frame. An
anchor takes its voxel over the time bins (2 x clone_t_scale) its one-sigma interval covers: one place may
hold an anchor per stretch of time. With `grow_in_bounds`, only primitives inside the scene box grow anchors.
Before growth, up to `reseed_anchors` new anchors go where training views showed something the model did
not draw (`reseed`). Parameter rows and their Adam moments are edited by `train.optim.edit_rows`, as
Gaussian densification does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from splat4d.methods.adcgs.reseed import MissedRays, gather_rows, seed_anchors
from splat4d.render import RenderOutput
from splat4d.train import distributed
from splat4d.train.optim import edit_rows


class AnchorRefiner:
    """Statistics per primitive slot (anchor x K, row-major) and the grow / prune step."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.start = self.stop = 0
        self.wgrad: Tensor | None = None  # [A*K] sum of Psi x |grad|
        self.weight: Tensor | None = None  # [A*K] sum of Psi
        self.max_opacity: Tensor | None = None  # [A*K] largest drawn opacity
        self.wtime: Tensor | None = None  # [A*K] sum of Psi x |grad| x t
        self.wtime2: Tensor | None = None  # [A*K] sum of Psi x |grad| x t^2
        self.missed = MissedRays()
        self.generator = torch.Generator().manual_seed(0)  # which missed pixels are noted and seeded

    def schedule(self, total_steps: int) -> None:
        self.start = round(self.cfg.refine_start_fraction * total_steps)
        self.stop = round(self.cfg.refine_stop_fraction * total_steps)

    def state_dict(self) -> dict:
        return {"wgrad": self.wgrad, "weight": self.weight, "max_opacity": self.max_opacity, "wtime": self.wtime,
                "wtime2": self.wtime2}

    def load_state_dict(self, state: dict) -> None:
        self.wgrad, self.weight, self.max_opacity = state["wgrad"], state["weight"], state["max_opacity"]
        self.wtime, self.wtime2 = state.get("wtime"), state.get("wtime2")

    def _reset(self) -> None:
        self.wgrad = self.weight = self.max_opacity = self.wtime = self.wtime2 = None

    def accumulate(self, outs: list[RenderOutput], slots: int, step: int) -> None:
        """Add this iteration's weighted screen gradients (per-view NDC units, as densification's)."""
        if step >= self.stop:
            return
        device = outs[0].rgb.device
        if self.wgrad is None or self.wgrad.shape[0] != slots or self.wgrad.device != device:
            self.wgrad = torch.zeros(slots, device=device)
            self.weight = torch.zeros(slots, device=device)
            self.max_opacity = torch.zeros(slots, device=device)
            self.wtime = torch.zeros(slots, device=device)
            self.wtime2 = torch.zeros(slots, device=device)
        views = sum(o.meta["means2d"].shape[0] for o in outs)
        for o in outs:
            m2d, w, slot = o.meta["means2d"], o.meta.get("weights"), o.meta["slot"]
            if m2d.grad is None or w is None or slot.numel() == 0:
                continue
            scale = torch.tensor([o.meta["width"] / 2.0, o.meta["height"] / 2.0], device=m2d.device) * views
            norms = (m2d.grad.detach() * scale).norm(dim=-1)  # [C, N]
            w = w.detach().to(norms)
            wg = (w * norms).sum(0).to(self.wgrad)
            t = float(o.meta.get("time", 0.0))
            self.wgrad.index_add_(0, slot, wg)
            self.weight.index_add_(0, slot, w.sum(0).to(self.weight))
            self.wtime.index_add_(0, slot, wg * t)
            self.wtime2.index_add_(0, slot, wg * (t * t))
            seen = (w > 0).any(0)
            opac = torch.where(seen, o.meta["opacities"].to(self.max_opacity), torch.zeros_like(self.max_opacity[slot]))
            self.max_opacity.scatter_reduce_(0, slot, opac, reduce="amax")

    @torch.no_grad()
    def refine(self, method, opt: torch.optim.Optimizer, step: int) -> dict:
        """Grow and prune on schedule; returns {"grown": n, "pruned": m} when it acted."""
        c = self.cfg
        if not (self.start < step < self.stop and step % c.refine_every == 0) or self.wgrad is None:
            return {}
        field = method.field
        A, K = len(field), c.k
        if self.wgrad.shape[0] != A * K:
            self._reset()
            return {}
        for t in (self.wgrad, self.weight, self.wtime, self.wtime2):
            distributed.all_reduce_sum_(t)
        distributed.all_reduce_max_(self.max_opacity)
        keep = self.max_opacity.reshape(A, K).amax(1) >= c.prune_opacity
        if not bool(keep.any()):
            keep[self.weight.reshape(A, K).sum(1).argmax()] = True  # never leave an empty model
        significance = torch.where(self.weight > 0, self.wgrad / self.weight.clamp_min(1e-12),
                                   torch.zeros_like(self.wgrad))
        seeds = self._seeds(method, keep)
        scene = getattr(method, "_scene", None)
        box = scene.bounds.float() if scene is not None and c.grow_in_bounds else None
        new = self._new_anchors(field, significance, keep, float(method.voxel), float(method.grow_threshold),
                                len(seeds["anchors"]), box)
        new = {name: torch.cat([seeds[name].to(new[name]), new[name]]) for name in field.fields}
        n_new = new["anchors"].shape[0]
        edit_rows(field, field.fields, opt, lambda name, p: torch.cat([p[keep], new[name].to(p)]),
                  lambda s: torch.cat([s[keep], s.new_zeros((n_new, *s.shape[1:]))]))
        self._reset()
        return {"grown": n_new, "seeded": len(seeds["anchors"]), "pruned": int((~keep).sum())}

    def note_missed(self, batch, alphas: Tensor, step: int) -> None:
        """Keep rays through the batch's foreground pixels that render almost transparent (`reseed`)."""
        if self.cfg.reseed_anchors > 0 and self.start <= step < self.stop:
            self.missed.note(batch.cameras, batch.times, batch.images, alphas, batch.background, self.generator)

    def _seeds(self, method, keep: Tensor) -> dict[str, Tensor]:
        """New anchors on the missed rays (as many as reseed_anchors and the anchor cap allow), the same
        on every data-parallel rank."""
        field = method.field
        empty = {name: getattr(field, name)[:0].detach() for name in field.fields}
        rays = self.missed.take()
        scene = getattr(method, "_scene", None)
        size = distributed.world_size()
        n = min(self.cfg.reseed_anchors, self.cfg.max_anchors - int(keep.sum())) // size
        rows = empty
        if rays is not None and scene is not None and n > 0:
            donor = int(torch.where(keep, self.max_opacity.reshape(len(field), -1).amax(1), -1.0).argmax())
            rows = seed_anchors(field, rays, scene, scene.bounds.float(), n, float(method.voxel), donor,
                                self.cfg.clone_t_scale, self.generator, self.cfg.ray_depths)
        return gather_rows(rows, n) if n > 0 else rows

    def _new_anchors(self, field, significance: Tensor, keep: Tensor, voxel: float, threshold: float,
                     seeded: int = 0, box: Tensor | None = None) -> dict[str, Tensor]:
        """New anchors at `grow_levels` voxel resolutions (Scaffold-GS's multi-resolution growth): at level m
        the voxel is voxel / 4^m and the threshold threshold x 2^m; one new anchor per such voxel holding a
        primitive above the threshold and no anchor (kept, or new at a coarser level), at most up to
        max_anchors, coarse levels first. A new anchor inherits the attributes of the anchor of the voxel's
        most significant primitive, its offsets and sizes scaled by 4^-m. With a `box` [2, 3], only
        primitives inside it grow anchors."""
        K = self.cfg.k
        room = self.cfg.max_anchors - int(keep.sum()) - seeded
        parts = [{name: getattr(field, name)[:0].detach() for name in field.fields}]
        cand = (significance > threshold).reshape(len(field), K) & keep[:, None]
        if room <= 0 or not bool(cand.any()):
            return parts[0]
        canon = (field.anchors[:, None] + field.canonical()["offsets"]).reshape(-1, 3)  # [A*K, 3]
        if box is not None:
            box = box.to(canon)
            cand = cand & ((canon >= box[0]) & (canon <= box[1])).all(1).reshape(len(field), K)
            if not bool(cand.any()):
                return parts[0]
        slots = cand.reshape(-1).nonzero()[:, 0]
        slots = slots[significance[slots].argsort(descending=True)]
        when = spread = None
        if field.temporal:
            when, spread = self.gradient_times(field)
            if field.velocity:  # where the primitive was at that time, apart from the coarse motion
                lag = (when - field.t_means.repeat_interleave(K))[:, None]
                canon = canon + field.t_velocity.repeat_interleave(K, 0) * lag
        placed = field.anchors[keep].detach()
        placed_t = (field.t_means[keep].detach(), field.t_log_scales[keep].detach().exp()) if field.temporal else None
        for level in range(self.cfg.grow_levels):
            size = voxel / 4**level
            sel = slots[significance[slots] > threshold * 2**level]
            if room <= 0 or len(sel) == 0:
                break
            pick, keys = self._free_voxels(canon[sel], None if when is None else when[sel], placed, placed_t, size)
            pick = pick[:room]
            if len(pick) == 0:
                continue
            parents = sel[pick] // K
            out = {name: getattr(field, name)[parents].detach().clone() for name in field.fields}
            out["anchors"] = (keys[pick, :3].to(field.anchors.dtype) + 0.5) * size
            out["log_cov"] = out["log_cov"] - level * math.log(4.0)
            if field.temporal:
                out["t_means"] = when[sel][pick].to(field.t_means).clamp(0.0, 1.0)
                width = (2.0 * spread[sel][pick]).clamp_min(self.cfg.clone_t_scale).log().to(field.t_log_scales)
                out["t_log_scales"] = torch.minimum(out["t_log_scales"], width)
                placed_t = tuple(torch.cat(x) for x in zip(placed_t, (out["t_means"], out["t_log_scales"].exp())))
            placed = torch.cat([placed, out["anchors"]])
            parts.append(out)
            room -= len(pick)
        return {name: torch.cat([p[name] for p in parts]) for name in field.fields}

    def gradient_times(self, field) -> tuple[Tensor, Tensor]:
        """([A*K] mean, [A*K] standard deviation) of the times of each primitive's weighted gradients since
        the last refinement; a primitive without gradients gets its anchor's centre and zero spread."""
        K = self.cfg.k
        total = self.wgrad.clamp_min(1e-12)
        has = self.wgrad > 0
        mean = torch.where(has, self.wtime / total, field.t_means.detach().repeat_interleave(K).to(total))
        var = torch.where(has, self.wtime2 / total - mean.square(), torch.zeros_like(total))
        return mean, var.clamp_min(0.0).sqrt()

    def _free_voxels(self, where: Tensor, when: Tensor | None, placed: Tensor,
                     placed_t: tuple[Tensor, Tensor] | None, size: float) -> tuple[Tensor, Tensor]:
        """(indices into `where` (ordered most significant first) of the first candidate in each voxel of
        `size` that holds no anchor of `placed`, ascending; the candidates' voxel keys). With times, a
        fourth key is the time bin (2 x clone_t_scale) of the candidate's time; an anchor (centres, widths
        `placed_t`) takes every bin its one-sigma interval in [0, 1] touches."""
        keys = torch.floor(where / size).long()
        occupied = torch.floor(placed / size).long()
        if when is not None:
            bin_width = 2.0 * self.cfg.clone_t_scale
            keys = torch.cat([keys, torch.floor(when / bin_width).long()[:, None]], 1)
            centre, width = placed_t
            lo = torch.floor((centre - width).clamp(0.0, 1.0) / bin_width).long()
            hi = torch.floor((centre + width).clamp(0.0, 1.0) / bin_width).long()
            count = hi - lo + 1
            rows = torch.repeat_interleave(torch.arange(len(placed), device=placed.device), count)
            first = torch.cumsum(count, 0) - count
            bins = lo[rows] + torch.arange(len(rows), device=placed.device) - first[rows]
            occupied = torch.cat([occupied[rows], bins[:, None]], 1)
        uniq, inv = torch.unique(torch.cat([occupied, keys]), dim=0, return_inverse=True)
        taken = torch.zeros(len(uniq), dtype=torch.bool, device=where.device)
        taken[inv[: len(occupied)]] = True
        key_ids = inv[len(occupied):]
        first = torch.full((len(uniq),), len(where), dtype=torch.long, device=where.device)
        first.scatter_reduce_(0, key_ids, torch.arange(len(where), device=where.device), reduce="amin")
        return first[(~taken) & (first < len(where))].sort().values, keys
