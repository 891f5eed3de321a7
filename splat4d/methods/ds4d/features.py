"""Frame features for DS4D: a token grid [Ph, Pw, D] per image, computed once per scene and cached on disk.

Two extractors share one interface (`FeatureExtractor`: float images [B, H, W, 3] in [0, 1] ->
[B, Ph, Pw, D], plus a `name` that every output made with it records):

- `DINOv2Features`: transformers' `Dinov2Model` (DS4D §3.2 uses DINOv2) from a local directory or the
  Hugging Face hub cache, offline, loaded when first called, never at import. The patch tokens of the
  last hidden state (the CLS token dropped) on an image resized so its shorter side is `size`.
- `PatchFeatures`: weights-free. Per 14 x 14 patch of the same resized image: mean and standard
  deviation of R, G, B, the mean signed and mean absolute horizontal and vertical luminance gradients
  (10 channels). It sees colour and edges, not semantics: a stand-in where DINOv2's weights are absent,
  named "patch" in the config, metrics and logs of every run that used it.

Both cover the whole image with the token grid (the image is resized to exactly Ph x 14 by Pw x 14), so
a pixel (u, v) of a W x H image falls on token coordinates (u / W * Pw, v / H * Ph).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from splat4d.errors import WeightsNotFound

PATCH = 14
DINOV2_ENV = "SPLAT4D_DINOV2_MODEL"
DEFAULT_DINOV2 = "facebook/dinov2-small"
CACHE_ENV = "SPLAT4D_CACHE"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def token_grid(height: int, width: int, size: int) -> tuple[int, int]:
    """(Ph, Pw) tokens of 14 px for an image whose shorter side is scaled to `size` pixels."""
    s = size / min(height, width)
    return max(1, round(height * s / PATCH)), max(1, round(width * s / PATCH))


def resize_to_grid(images: Tensor, size: int) -> Tensor:
    """[B, H, W, 3] -> [B, 3, Ph * 14, Pw * 14] (bilinear, antialiased when shrinking)."""
    ph, pw = token_grid(images.shape[1], images.shape[2], size)
    x = images.permute(0, 3, 1, 2).float()
    return F.interpolate(x, size=(ph * PATCH, pw * PATCH), mode="bilinear", align_corners=False, antialias=True)


class FeatureExtractor:
    """Images [B, H, W, 3] float in [0, 1] -> token grids [B, Ph, Pw, D]."""

    name = ""

    def __init__(self, size: int = 224):
        self.size = size

    def cache_key(self) -> str:
        """What, besides the images, the features depend on."""
        return f"{self.name}:{self.size}"

    def __call__(self, images: Tensor) -> Tensor:
        raise NotImplementedError


class PatchFeatures(FeatureExtractor):
    """Weights-free per-patch colour statistics and gradients (see the module docstring)."""

    name = "patch"
    channels = 10

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = resize_to_grid(images, self.size)  # [B, 3, H', W']
        B, _, H, W = x.shape
        lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        gx = F.pad(lum[..., :, 1:] - lum[..., :, :-1], (0, 1, 0, 0))
        gy = F.pad(lum[..., 1:, :] - lum[..., :-1, :], (0, 0, 0, 1))
        pool = lambda t: F.avg_pool2d(t, PATCH)  # noqa: E731
        mean = pool(x)
        spread = x - mean.repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)
        std = pool(spread * spread).sqrt()
        feats = torch.cat([mean, std, pool(gx), pool(gy), pool(gx.abs()), pool(gy.abs())], dim=1)
        return feats.permute(0, 2, 3, 1).contiguous()  # [B, Ph, Pw, 10]


class DINOv2Features(FeatureExtractor):
    """Patch tokens of a transformers `Dinov2Model` (loaded offline on first use)."""

    name = "dinov2"

    def __init__(self, model: str = DEFAULT_DINOV2, size: int = 224, device="cpu", batch: int = 8):
        super().__init__(size)
        self.model_name = model
        self.device = torch.device(device)
        self.batch = batch
        self._model = None

    def cache_key(self) -> str:
        return f"{self.name}:{self.size}:{Path(self.model_name).name}:{self.model.config.hidden_size}:" \
               f"{self.model.config.num_hidden_layers}:{_param_digest(self.model)}"

    @property
    def model(self):
        if self._model is None:
            self._model = load_dinov2(self.model_name, self.device)
        return self._model

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        model = self.model
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        out = []
        for chunk in images.split(self.batch):
            x = (resize_to_grid(chunk.to(self.device), self.size) - mean) / std
            ph, pw = x.shape[2] // PATCH, x.shape[3] // PATCH
            tokens = model(pixel_values=x).last_hidden_state[:, 1:]  # CLS dropped
            tokens = tokens[:, -ph * pw:]  # register tokens, if the model has them, come before the patches
            out.append(tokens.reshape(len(chunk), ph, pw, -1).float().cpu())
        return torch.cat(out)


def dinov2_missing(name: str, reason: str) -> str:
    return (f"DINOv2 weights not found ({reason}): download {DEFAULT_DINOV2} (e.g. `huggingface-cli download "
            f"{DEFAULT_DINOV2} --local-dir DIR`) and pass --method.dinov2-model DIR (or set {DINOV2_ENV}), or "
            f"use the weights-free --method.features patch")


def load_dinov2(name: str, device="cpu"):
    """A `Dinov2Model` in eval mode from a local directory or the hub cache (`org/name`), offline only."""
    from splat4d.methods.diffusion2.priors import looks_like_repo_id

    name = os.environ.get(DINOV2_ENV, name) if name == "auto" else name
    name = DEFAULT_DINOV2 if name == "auto" else name
    if not Path(name).is_dir() and not looks_like_repo_id(name):
        raise WeightsNotFound(dinov2_missing(name, f"no directory {name}"))
    try:
        import transformers
        from transformers import Dinov2Model
    except ImportError:
        raise WeightsNotFound("DINOv2 features need transformers: pip install 'splat4d[gen]' "
                              "(or use --method.features patch)") from None
    transformers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Dinov2Model.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightsNotFound(dinov2_missing(name, f"{name}: {str(e).splitlines()[0][:160]}")) from None
    return model.to(device).eval().requires_grad_(False)


def _param_digest(model) -> str:
    h = hashlib.sha1()
    for p in list(model.parameters())[:4]:
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
    return h.hexdigest()[:12]


def make_extractor(kind: str, size: int, dinov2_model: str = "auto", device="cpu") -> FeatureExtractor:
    if kind == "patch":
        return PatchFeatures(size)
    if kind == "dinov2":
        return DINOv2Features(dinov2_model, size, device)
    raise ValueError(f"unknown feature extractor {kind!r}")


def cache_dir(setting: str) -> Path | None:
    """Where features are cached: "auto" -> $SPLAT4D_CACHE/features or ~/.cache/splat4d/features;
    "none" -> no cache; anything else is the folder."""
    if setting == "none":
        return None
    if setting != "auto":
        return Path(setting)
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "features" if root else Path.home() / ".cache" / "splat4d" / "features"


def frame_features(images: Tensor, extractor: FeatureExtractor, cache: Path | None = None,
                   chunk: int = 16) -> Tensor:
    """Features of images [T, V, H, W, 3] -> [T, V, Ph, Pw, D], read from `cache` when the same images were
    seen by the same extractor before (the key hashes both), else computed and written there atomically."""
    T, V = images.shape[:2]
    path = None
    if cache is not None:
        h = hashlib.sha1(extractor.cache_key().encode())
        h.update(str(tuple(images.shape)).encode())
        h.update((images * 255).round().to(torch.uint8).numpy().tobytes())
        path = Path(cache) / f"ds4d_{extractor.name}_{h.hexdigest()[:20]}.pt"
        if path.is_file():
            try:
                return torch.load(path, weights_only=True)
            except Exception:  # a damaged cache entry is recomputed, never trusted
                pass
    flat = images.reshape(T * V, *images.shape[2:])
    feats = torch.cat([extractor(c) for c in flat.split(chunk)])
    feats = feats.reshape(T, V, *feats.shape[1:])
    if path is not None:
        from splat4d.train.checkpoint import atomic_write_bytes
        import io

        buf = io.BytesIO()
        torch.save(feats, buf)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    return feats


def reduce_channels(decoupled: Tensor, channels: int) -> Tensor:
    """[..., 2D] decoupled features -> [..., 2k]: the frame part and the dynamic part each projected onto
    its k leading right-singular vectors (uncentred, so the dot products the fusion layers take are kept
    in the dominant subspace). 0 or k >= D keeps everything. DS4D's point features carry all 2D channels;
    at DINOv2's 384-1536 that is ~1 GB per render for 50k Gaussians and four views on a CPU."""
    D = decoupled.shape[-1] // 2
    if channels <= 0 or channels >= D:
        return decoupled
    out = []
    for part in decoupled.split(D, dim=-1):
        flat = part.reshape(-1, D).double()
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)
        basis = vh[:channels].T  # [D, k]
        out.append((flat @ basis).float().reshape(*part.shape[:-1], channels))
    return torch.cat(out, dim=-1)
