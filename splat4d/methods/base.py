"""The method contract and registry. A method is a config dataclass plus an `nn.Module` subclass of
`Method`; it registers itself by name and the Trainer only ever talks to this interface."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from splat4d.cameras import Cameras
from splat4d.errors import ConfigError
from splat4d.render import RenderOutput
from splat4d.train.optim import ParamGroup

# built-in methods, imported on first use so that `import splat4d` stays light
BUILTIN = {
    "static": "splat4d.methods.static",
    "deformable": "splat4d.methods.deformable",
    "adcgs": "splat4d.methods.adcgs.method",
    "fourk4d": "splat4d.methods.fourk4d.method",
    "fourk4d_baked": "splat4d.methods.fourk4d.baked",
    "ds4d": "splat4d.methods.ds4d.method",
}
MADE_NOT_TRAINED = {"fourk4d_baked"}
"""Methods whose run folders are made by a command (`splat4d bake`), not by `fit`: loadable, not listed."""
_REGISTRY: dict[str, type["Method"]] = {}


@dataclass
class Batch:
    """What one training step sees: C views (usually 1) with their images and times."""

    cameras: Cameras
    times: Tensor  # [C]
    images: Tensor  # [C, H, W, 3]
    alphas: Tensor | None  # [C, H, W] float foreground masks in [0, 1] when the method `wants_alphas`, else None
    background: Tensor  # [3]
    index: Tensor  # [C] view indices in the split


class Method(nn.Module):
    """Base class of every method.

    Subclasses set `name` and `Config`, and implement `from_scene`, `render`, `loss`, `param_groups`.
    Optional hooks (`after_backward`, `after_step`, `on_step`) let a method densify, prune or switch
    stages; `num_primitives` is reported by eval.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    @classmethod
    def from_scene(cls, scene, cfg, generator: torch.Generator | None = None) -> "Method":
        raise NotImplementedError

    @classmethod
    def prepare_scene(cls, scene, cfg):
        """The scene this method trains on and is evaluated on, from the scene as read (default: unchanged).
        `fit`, `eval` and `render` all call it, so a method that re-splits views (ds4d: chosen input and
        pseudo cameras train, the rest are held out) is evaluated on the split it was trained for."""
        return scene

    @classmethod
    def empty(cls, cfg, state: dict) -> "Method":
        """An instance shaped to receive `state` (for loading checkpoints)."""
        raise NotImplementedError

    def render(self, cameras: Cameras, t: float, background: Tensor | None = None, **kw) -> RenderOutput:
        raise NotImplementedError

    def loss(self, batch: Batch, outs: list[RenderOutput], step: int) -> tuple[Tensor, dict]:
        raise NotImplementedError

    def param_groups(self, total_steps: int) -> list[ParamGroup]:
        raise NotImplementedError

    def on_step(self, step: int) -> None:
        """Called before each training step (stage switches)."""

    def after_backward(self, outs: list[RenderOutput], step: int) -> None:
        """Called after loss.backward(), before the optimiser step."""

    def after_step(self, opt: torch.optim.Optimizer, step: int) -> dict:
        """Called after the optimiser step (densification); returns things to log."""
        return {}

    def extra_state(self) -> dict:
        """Non-parameter state a resumed run needs (e.g. densification statistics)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def describe(self) -> dict:
        """What an evaluation result should say about how the model was made (e.g. which feature extractor)."""
        return {}

    @property
    def num_primitives(self) -> int:
        return 0

    @property
    def device(self) -> torch.device:
        """Where the method's tensors live (parameters, else buffers: a baked model has only buffers)."""
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def fused_optimizer(self) -> bool:
        """Whether the Trainer should step this method's parameters with torch's fused Adam on the CPU."""
        return False

    @property
    def wants_alphas(self) -> bool:
        """Whether `loss` needs the scene's foreground masks in `Batch.alphas`. The Trainer then loads
        them (and refuses a scene without masks); otherwise `Batch.alphas` is None."""
        return False


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError("a method class needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    """Names of the methods `fit` trains (those only made by another command, such as a baked model, left out)."""
    return sorted((set(BUILTIN) | set(_REGISTRY)) - MADE_NOT_TRAINED)
