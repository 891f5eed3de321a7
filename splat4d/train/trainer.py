"""The Trainer: one loop for every method. It samples views, calls the method's render/loss/hooks, steps
the optimiser with per-group schedules, evaluates, checkpoints atomically, resumes, survives SIGINT/SIGTERM
and stops on a non-finite loss. It knows nothing method-specific."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from splat4d.data.image_cache import ViewLoader, cache_budget
from splat4d.errors import CheckpointError, ConfigError, Splat4DError
from splat4d.methods.base import Batch, Method
from splat4d.render.cpu_kernels import start_threads
from splat4d.train import distributed
from splat4d.train.checkpoint import load_checkpoint, save_checkpoint, save_config, to_plain
from splat4d.train.optim import make_adam, set_fused, set_learning_rates


class TrainingDiverged(Splat4DError):
    """The loss or the parameters became NaN/Inf."""


@dataclass
class TrainConfig:
    """Training loop settings (method-independent)."""

    iters: int = 3000
    """Total training iterations."""
    batch_size: int = 1
    """Views per iteration (per rank in a data-parallel run: torchrun with N ranks trains on N x this)."""
    eval_every: int = 0
    """Evaluate on the test split every this many iterations (0: only at the end)."""
    save_every: int = 1000
    """Write checkpoint.pt every this many iterations (and at the end, and on SIGINT/SIGTERM)."""
    seed: int = 0
    """Seed of initialisation, view sampling and densification."""
    device: str = "auto"
    """Device: auto (cuda when available), cpu, cuda or cuda:N."""
    torch_threads: int = 1
    """Torch intra-op threads while training on the CPU (0: torch's default). The CPU rasterizer runs on
    numba's own threads; one torch thread keeps the two pools from fighting over the cores."""
    image_cache_gb: float = 0.0
    """Memory for decoded training images (uint8) in GiB; views beyond it are decoded again when sampled,
    while a background thread decodes the next ones (0: 1/32 of the available memory, at most 8)."""

    def validate(self, prefix: str = "train") -> None:
        """Raise ConfigError naming the first setting out of range (see splat4d.config_checks)."""
        from splat4d.config_checks import check_device, check_float, check_int

        check_int(f"{prefix}.iters", self.iters, 1)
        check_int(f"{prefix}.batch_size", self.batch_size, 1)
        check_int(f"{prefix}.eval_every", self.eval_every, 0)
        check_int(f"{prefix}.save_every", self.save_every, 0)
        check_int(f"{prefix}.seed", self.seed, 0, 2**32 - 1)
        check_device(f"{prefix}.device", self.device)
        check_int(f"{prefix}.torch_threads", self.torch_threads, 0, 1024)
        check_float(f"{prefix}.image_cache_gb", self.image_cache_gb, 0)


class Trainer:
    def __init__(self, method: Method, scene, cfg: TrainConfig, run_dir: Path, config: dict, device: torch.device,
                 view_order=None):
        """`view_order(step, generator, views) -> list[int]`, if given, draws each epoch of indices into the
        training views (popped from the end) instead of a uniform permutation of them: a warm-up on some views, or
        views weighted by how far they are from a reference (Diffusion² stage 2)."""
        self.method = method.to(device)
        self.view_order = view_order
        self.scene = scene
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.config = config
        self.device = device
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.order: list[int] = []
        self.groups = method.param_groups(cfg.iters)
        self.opt = make_adam(self.groups, self._fused_adam())
        self.background = torch.tensor(scene.background, dtype=torch.float32, device=device)
        self._stop_signal: int | None = None
        self.last_saved: int | None = None
        self._load_views()

    def _fused_adam(self) -> bool:
        """torch's fused Adam on the CPU when the method asks for it (`Method.fused_optimizer`)."""
        return self.device.type == "cpu" and self.method.fused_optimizer

    # -------------------------------------------------------------- data
    def _load_views(self) -> None:
        views = self.scene.split("train")
        if not views:
            raise Splat4DError(f"scene {self.scene.name!r} has no training views")
        self.views = views
        self.cams = self.scene.cameras("train").to(self.device)
        self.times = self.scene.times("train").to(self.device)
        alphas = self.method.wants_alphas
        if alphas and not self.scene.has_masks("train"):
            raise ConfigError(f"method {self.method.name!r} is set to use foreground masks (e.g. lambda_mask > 0) "
                              f"but the training views of scene {self.scene.name!r} have none")
        self.image_loader = ViewLoader.for_scene(self.scene, views, cache_budget(self.cfg.image_cache_gb), alphas,
                                                 lookahead=max(8, 2 * self.cfg.batch_size))

    def _epoch(self, gen: torch.Generator) -> list[int]:
        if self.view_order is None:
            return torch.randperm(len(self.views), generator=gen, device="cpu").tolist()
        order = [int(i) for i in self.view_order(self.step, gen, self.views)]
        if not order or min(order) < 0 or max(order) >= len(self.views):
            raise Splat4DError(f"view_order gave indices outside the {len(self.views)} training views")
        return order

    def _next_indices(self) -> list[int]:
        """This rank's views of the next iteration. Every rank draws the whole global batch from the same
        seeded sampler and takes its own consecutive share, so R ranks of batch B see exactly the views
        one process of batch R x B would."""
        idx = []
        for _ in range(self.cfg.batch_size * distributed.world_size()):
            if not self.order:
                self.order = self._epoch(self.gen)
            idx.append(self.order.pop())
        start = distributed.rank() * self.cfg.batch_size
        return idx[start : start + self.cfg.batch_size]

    def _next_batch(self) -> Batch:
        idx = self._next_indices()
        index = torch.tensor(idx, device="cpu")
        images, alphas = self.image_loader.batch(idx, self.device)  # [C, H, W, 3], [C, H, W] | None
        self.image_loader.prefetch(self._upcoming_views(self.image_loader.lookahead))
        return Batch(self.cams[idx[0]] if len(idx) == 1 else _cams_at(self.cams, idx), self.times[index],
                     images, alphas, self.background, index)

    def _upcoming_views(self, n: int) -> list[int]:
        """The next n view indices this rank's `_next_batch` will take, read from a copy of the sampler's
        generator (so looking ahead never changes what is sampled). The global sequence is consumed in
        steps of batch_size x world_size; this rank takes its consecutive share of each step."""
        B, W, r = self.cfg.batch_size, distributed.world_size(), distributed.rank()
        need = n * W
        seq = self.order[-1 : -need - 1 : -1]
        if len(seq) < need:
            gen = torch.Generator()
            gen.set_state(self.gen.get_state())
            while len(seq) < need:
                seq += self._epoch(gen)[::-1][: need - len(seq)]
        return [v for pos, v in enumerate(seq) if (pos % (B * W)) // B == r][:n]

    # -------------------------------------------------------------- state
    def state(self) -> dict:
        return {
            "method": self.method.name, "config": to_plain(self.config), "step": self.step,
            "model": self.method.state_dict(), "extra": self.method.extra_state(),
            "optimizer": self.opt.state_dict(), "sampler": self.gen.get_state(), "order": list(self.order),
        }

    def save(self) -> Path:
        """Write checkpoint.pt (rank 0 only; every rank records the step)."""
        path = self.run_dir / "checkpoint.pt"
        if distributed.is_main():
            path = save_checkpoint(self.run_dir, self.state())
        self.last_saved = self.step
        return path

    def resume(self) -> None:
        ckpt = load_checkpoint(self.run_dir, self.method.name)
        try:
            method = type(self.method).empty(self.method.cfg, ckpt["model"])
            method.load_state_dict(ckpt["model"])
            method.load_extra_state(ckpt["extra"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint in {self.run_dir} does not fit the given {self.method.name!r} "
                                  f"settings: {str(e).splitlines()[0]}") from None
        self.method = method.to(self.device)
        self.groups = self.method.param_groups(self.cfg.iters)
        self.opt = make_adam(self.groups, self._fused_adam())
        self.opt.load_state_dict(ckpt["optimizer"])
        set_fused(self.opt, self._fused_adam())
        self.gen.set_state(ckpt["sampler"])
        self.order = list(ckpt["order"])
        self.step = self.last_saved = int(ckpt["step"])

    # -------------------------------------------------------------- loop
    def fit(self, evaluate=None, progress: bool = True) -> dict:
        """Train to cfg.iters. `evaluate(method) -> dict` is called every eval_every iterations (the caller
        evaluates the final model)."""
        main = distributed.is_main()
        if main:
            save_config(self.run_dir, self.config)
        distributed.barrier()  # every rank has checked the run folder before rank 0 writes into it
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and self.cfg.torch_threads > 0:
            start_threads()  # else numba's first kernel launch would undo the next line
            torch.set_num_threads(self.cfg.torch_threads)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=self.cfg.iters, initial=self.step, desc=f"fit {self.method.name}", file=sys.stderr,
                   disable=not (progress and main), mininterval=0.5 if sys.stderr.isatty() else 15, dynamic_ncols=True)
        log_path = self.run_dir / "train_log.jsonl"
        psnr_avg, t0, start = None, time.perf_counter(), self.step
        try:
            while self.step < self.cfg.iters:
                if self._stop_requested():
                    return self._interrupted(bar)
                logs = self._train_step()
                psnr_avg = logs["psnr"] if psnr_avg is None else 0.9 * psnr_avg + 0.1 * logs["psnr"]
                bar.set_postfix(loss=f"{logs['loss']:.4f}", psnr=f"{psnr_avg:.2f}", n=self.method.num_primitives, refresh=False)
                bar.update(1)
                if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                    self.save()
                if (main and evaluate and self.cfg.eval_every and self.step % self.cfg.eval_every == 0
                        and self.step < self.cfg.iters):
                    self._log(log_path, {"step": self.step, **evaluate(self.method)})
            self.save()
        finally:
            self.image_loader.close()
            bar.close()
            torch.set_num_threads(threads)
            for s, h in old.items():
                signal.signal(s, h)
        return {"iterations": self.step, "train_seconds": time.perf_counter() - t0, "steps_run": self.step - start}

    def _train_step(self) -> dict:
        step = self.step
        self.method.train()
        self.method.on_step(step)
        set_learning_rates(self.opt, self.groups, step)
        batch = self._next_batch()
        outs = [self.method.render(batch.cameras[i] if len(batch.times) > 1 else batch.cameras, float(t), batch.background)
                for i, t in enumerate(batch.times)]
        loss, logs = self.method.loss(batch, outs, step)
        (nonfinite,) = distributed.any_rank([not bool(torch.isfinite(loss))], self.device)
        if nonfinite:  # on any rank: every rank stops at the same iteration
            raise TrainingDiverged(self._diverged_message(step, "loss"))
        loss.backward()
        self.method.after_backward(outs, step)
        distributed.average_gradients([p for g in self.opt.param_groups for p in g["params"]])
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        events = self.method.after_step(self.opt, self.step)
        if self.step % 50 == 0 or self._due_to_save():
            self.check_finite(step)
        return {"loss": float(loss.detach()), **logs, **events}

    def _due_to_save(self) -> bool:
        return self.step >= self.cfg.iters or bool(self.cfg.save_every and self.step % self.cfg.save_every == 0)

    def check_finite(self, step: int) -> None:
        """A non-finite loss is caught every step; parameters are checked every 50 steps and before every
        checkpoint, so a checkpoint on disk is always finite."""
        if not all(torch.isfinite(p).all() for p in self.method.parameters()):
            raise TrainingDiverged(self._diverged_message(step, "parameters"))

    def _diverged_message(self, step: int, what: str) -> str:
        where = (f"last good checkpoint {self.run_dir / 'checkpoint.pt'} (iteration {self.last_saved})"
                 if self.last_saved is not None else "no checkpoint was written yet")
        return f"training diverged: non-finite {what} in iteration {step + 1}; {where}. Try lower learning rates."

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _stop_requested(self) -> bool:
        """A signal arrived here or, in a data-parallel run, on any rank (torchrun forwards signals to
        every rank, but not at the same iteration): all ranks stop together."""
        if not distributed.active():
            return self._stop_signal is not None
        (stop,) = distributed.any_rank([self._stop_signal is not None], self.device)
        if stop and self._stop_signal is None:
            self._stop_signal = signal.SIGTERM
        return stop

    def _interrupted(self, bar) -> dict:
        bar.close()
        self.check_finite(self.step - 1)
        path = self.save()
        name = signal.Signals(self._stop_signal).name
        if distributed.is_main():
            print(f"{name} received: saved {path} at iteration {self.step}; continue with --resume",
                  file=sys.stderr)
        return {"interrupted": name, "iterations": self.step}

    @staticmethod
    def _log(path: Path, row: dict) -> None:
        if not distributed.is_main():
            return
        with open(path, "a") as f:
            f.write(json.dumps({k: v for k, v in row.items() if _jsonable(v)}) + "\n")


def _cams_at(cams, idx):
    from splat4d.cameras import Cameras

    return Cameras(cams.viewmats[idx], cams.Ks[idx], cams.width, cams.height)


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None))) and not (isinstance(v, float) and math.isnan(v))
