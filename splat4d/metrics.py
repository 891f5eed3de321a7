"""Image quality metrics (PSNR, SSIM, D-SSIM, LPIPS) and timing / size helpers for evaluation.

Images are [..., H, W, 3] float in [0, 1] (torch tensors or numpy arrays; uint8 is divided by 255).
PSNR and SSIM return 0-dim tensors that keep the autograd graph (use `float(...)` for a number).

LPIPS needs two sets of pretrained weights that cannot be downloaded at run time here: the backbone
(torchvision VGG16 or AlexNet `features`) and LPIPS' linear heads `lin0..lin4`. splat4d builds the
network itself and loads both from one local `.pth` (argument or `SPLAT4D_LPIPS_WEIGHTS`); see
`build_lpips_weights` and docs/metrics.md. Without that file `lpips` returns None and `lpips_status`
says why — it never reports a number computed from random weights.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splat4d.errors import WeightsNotFound

LPIPS_ENV = "SPLAT4D_LPIPS_WEIGHTS"
"""Environment variable naming the combined LPIPS weights file."""
_NO_WEIGHTS = f"unavailable: no LPIPS weights (set {LPIPS_ENV}=/path/to/lpips_<net>.pth, see docs/metrics.md)"


# ----------------------------------------------------------------------------- PSNR / SSIM
def _as_images(x) -> Tensor:
    """[..., H, W, C] array or tensor -> float tensor [B, H, W, C] (uint8 scaled to [0, 1])."""
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        t = t.float()
    if t.dim() < 3:
        raise ValueError(f"expected images [..., H, W, C], got shape {tuple(t.shape)}")
    return t.reshape(-1, *t.shape[-3:])


def psnr(img, ref, mask=None) -> Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1], averaged over images.

    Args:
        img, ref: [..., H, W, 3].
        mask: optional [..., H, W] or [..., H, W, 1] weights in [0, 1]; only masked pixels count
            (MSE = sum(mask * err^2) / (sum(mask) * 3)).
    Returns:
        0-dim tensor: mean over the leading dims of per-image PSNR; an image's MSE is floored at 1e-10,
        so identical images give 100 dB instead of inf.
    """
    x, y = _as_images(img), _as_images(ref)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    err = (x - y.to(x)) ** 2  # [B, H, W, C]
    if mask is None:
        mse = err.mean(dim=(1, 2, 3))
    else:
        B, H, W = x.shape[:3]
        m = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
        m = m.to(x)
        if tuple(m.shape[-2:]) == (H, W):
            m = m[..., None]
        if m.dim() < 3 or tuple(m.shape[-3:]) != (H, W, 1):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not fit images of {H}x{W}")
        m = m.reshape(-1, H, W, 1)
        if m.shape[0] not in (1, B):
            raise ValueError(f"mask holds {m.shape[0]} images, expected 1 or {B}")
        m = m.expand(B, H, W, 1)
        count = m.sum(dim=(1, 2, 3)) * x.shape[-1]
        if (count <= 0).any():
            raise ValueError("psnr mask selects no pixels in some image")
        mse = (err * m).sum(dim=(1, 2, 3)) / count
    return (-10.0 * torch.log10(mse.clamp(min=1e-10))).mean()


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> Tensor:
    """1-D normalised Gaussian [size]; the 2-D SSIM window is its outer product (separable)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_map(img, ref, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM [B, C, H, W] with a Gaussian window, zero padding to 'same' size (3DGS convention).

    The five local statistics are filtered in one grouped, separable convolution (11 + 11 taps instead
    of 121), identical to the 2-D window up to rounding."""
    x, y = _as_images(img), _as_images(ref)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    x, y = x.permute(0, 3, 1, 2), y.to(x).permute(0, 3, 1, 2)  # [B, C, H, W]
    C = x.shape[1]
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5C, H, W]
    pad = window // 2
    stats = F.conv2d(stats, g.view(1, 1, window, 1).expand(5 * C, 1, window, 1), padding=(pad, 0), groups=5 * C)
    stats = F.conv2d(stats, g.view(1, 1, 1, window).expand(5 * C, 1, 1, window), padding=(0, pad), groups=5 * C)
    mu_x, mu_y, exx, eyy, exy = stats.split(C, dim=1)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim(img, ref) -> Tensor:
    """Structural similarity, mean over all pixels, channels and images (11x11 Gaussian, sigma 1.5,
    C1 = 0.01^2, C2 = 0.03^2, zero-padded 'same' convolution as in 3DGS / fused_ssim). 0-dim tensor."""
    return ssim_map(img, ref).mean()


def dssim(img, ref) -> Tensor:
    """Structural dissimilarity (1 - SSIM) / 2. 0-dim tensor."""
    return (1.0 - ssim(img, ref)) / 2.0


# ----------------------------------------------------------------------------- LPIPS
class LPIPSUnavailable(WeightsNotFound):
    """LPIPS weights are missing or do not fit the network; the message says what to provide."""


_ARCH = {
    # conv layers as (in, out, kernel, stride, padding); "M" = max pool. Built as torchvision does
    # (conv, ReLU, ...), so `features.<i>` indices and a torchvision state dict line up.
    "vgg": [(3, 64, 3, 1, 1), (64, 64, 3, 1, 1), "M2", (64, 128, 3, 1, 1), (128, 128, 3, 1, 1), "M2",
            (128, 256, 3, 1, 1), (256, 256, 3, 1, 1), (256, 256, 3, 1, 1), "M2",
            (256, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), "M2",
            (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1)],
    "alex": [(3, 64, 11, 4, 2), "M3", (64, 192, 5, 1, 2), "M3", (192, 384, 3, 1, 1),
             (384, 256, 3, 1, 1), (256, 256, 3, 1, 1)],
}
_TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}  # features index whose output LPIPS compares
_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}


class _LinLayer(nn.Module):
    """LPIPS' 1x1 convolution head; `model.1` so lpips' `lin<k>.model.1.weight` keys load as they are."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, stride=1, padding=0, bias=False))


class LPIPSNet(nn.Module):
    """LPIPS (v0.1): backbone features, channel-normalised squared differences, 1x1 heads, spatial mean.

    forward(img, ref) takes [B, 3, H, W] in [0, 1] and returns the distance per image [B]; it is
    differentiable with respect to the images (usable as a perceptual loss).
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in _ARCH:
            raise ValueError(f"unknown LPIPS backbone {net!r} (choose from {sorted(_ARCH)})")
        self.net = net
        layers: list[nn.Module] = []
        for spec in _ARCH[net]:
            if isinstance(spec, str):
                layers.append(nn.MaxPool2d(kernel_size=int(spec[1]), stride=2))
            else:
                cin, cout, k, s, p = spec
                layers += [nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.ReLU(inplace=False)]
        self.features = nn.Sequential(*layers)
        for k, ch in enumerate(_CHANNELS[net]):
            self.add_module(f"lin{k}", _LinLayer(ch))
        # lpips' ScalingLayer constants, applied to inputs in [-1, 1]
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None], persistent=False)
        self.eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out, taps = [], _TAPS[self.net]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out.append(x)
            if i == taps[-1]:
                break
        return out

    def forward(self, img: Tensor, ref: Tensor) -> Tensor:  # [B, 3, H, W] x2 -> [B]
        fx = self._taps(((2 * img - 1) - self.shift) / self.scale)
        fy = self._taps(((2 * ref - 1) - self.shift) / self.scale)
        total = 0.0
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((a - b) ** 2).mean(dim=(2, 3))
        return total[:, 0]


def _normalise_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accept our keys, a torchvision+lpips merge, or a saved `lpips.LPIPS` module state dict."""
    out = {}
    for key, value in sd.items():
        key = key.removeprefix("module.")
        parts = key.split(".")
        if parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
            key = f"features.{parts[2]}.{parts[3]}"  # lpips' net.slice<k>.<torchvision index>.<param>
        elif parts[0].startswith("lin") and len(parts) == 2:
            key = f"{parts[0]}.model.1.{parts[1]}"
        out[key] = value
    return out


def _weights_path(weights: str | os.PathLike | None) -> Path:
    path = weights if weights is not None else os.environ.get(LPIPS_ENV) or None
    if path is None:
        raise LPIPSUnavailable(_NO_WEIGHTS)
    path = Path(path).expanduser()
    if not path.is_file():
        raise LPIPSUnavailable(f"unavailable: LPIPS weights file {path} not found (see docs/metrics.md)")
    return path


def _state_dict_of(path: Path) -> dict[str, Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        raise LPIPSUnavailable(f"unavailable: cannot read LPIPS weights {path}: {e}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise LPIPSUnavailable(f"unavailable: {path} does not hold a state dict")
    return _normalise_keys(sd)


_CACHE: dict[tuple, LPIPSNet] = {}


def load_lpips(net: str = "vgg", weights: str | os.PathLike | None = None, device=None) -> LPIPSNet:
    """The LPIPS network with weights from `weights` or $SPLAT4D_LPIPS_WEIGHTS (cached per file).

    The file must hold every `features.<i>.weight/bias` of the backbone (torchvision numbering) and
    `lin0..lin4.model.1.weight`; extra keys (e.g. torchvision's `classifier.*`) are ignored.
    Raises `LPIPSUnavailable` when the file is absent, unreadable or does not fit `net`.
    """
    path = _weights_path(weights)
    key = (str(path.resolve()), path.stat().st_mtime_ns, net, str(torch.device(device or "cpu")))
    if key in _CACHE:
        return _CACHE[key]
    model = LPIPSNet(net)
    sd = _state_dict_of(path)
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    if missing:
        raise LPIPSUnavailable(
            f"unavailable: {path} lacks {len(missing)} LPIPS-{net} keys (e.g. {missing[:3]}); it needs the "
            "backbone's features.<i>.weight/bias and lin0..lin4.model.1.weight (see docs/metrics.md)"
        )
    bad = [k for k in want if tuple(sd[k].shape) != tuple(want[k].shape)]
    if bad:
        raise LPIPSUnavailable(f"unavailable: {path} does not fit LPIPS-{net} (shape of {bad[0]} differs)")
    model.load_state_dict({k: sd[k] for k in want})
    model.requires_grad_(False)
    model = model.to(device or "cpu")
    _CACHE.clear()  # keep one network in memory
    _CACHE[key] = model
    return model


def lpips_status(net: str = "vgg", weights: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(available, reason): whether `lpips` can return a number, and from which file or why not."""
    try:
        load_lpips(net, weights)
    except LPIPSUnavailable as e:
        return False, str(e)
    return True, f"LPIPS-{net} weights from {_weights_path(weights)}"


def lpips(img, ref, net: str = "vgg", weights: str | os.PathLike | None = None) -> float | None:
    """Mean LPIPS distance of images [..., H, W, 3] in [0, 1]; None when the weights are unavailable
    (call `lpips_status` for the reason)."""
    x, y = _as_images(img), _as_images(ref)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    try:
        model = load_lpips(net, weights, device=x.device)
    except LPIPSUnavailable:
        return None
    with torch.no_grad():
        d = model(x.permute(0, 3, 1, 2).float(), y.to(x).permute(0, 3, 1, 2).float())
    return float(d.mean())


def build_lpips_weights(backbone: str | os.PathLike, heads: str | os.PathLike, out: str | os.PathLike,
                        net: str = "vgg") -> Path:
    """Merge a torchvision backbone state dict (e.g. vgg16-397923af.pth, keys `features.*`) and lpips'
    head weights (e.g. lpips/weights/v0.1/vgg.pth, keys `lin<k>.model.1.weight`) into the single file
    `load_lpips` reads; checks that it loads, writes atomically and returns the path."""
    merged = {k: v for k, v in _state_dict_of(Path(backbone)).items() if k.startswith("features.")}
    merged.update({k: v for k, v in _state_dict_of(Path(heads)).items() if k.startswith("lin")})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    torch.save(merged, tmp)
    try:
        load_lpips(net, tmp)
    except LPIPSUnavailable:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out


# ----------------------------------------------------------------------------- timing and sizes
def _sync_cuda() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_render(fn: Callable[[], Any], warmup: int = 2, iters: int = 10) -> dict[str, float]:
    """Wall time of `fn()` over `iters` calls after `warmup` calls, synchronising CUDA around each call
    when CUDA is in use (kernels are asynchronous). Returns ms_mean, ms_std, ms_min, fps, iters."""
    for _ in range(warmup):
        fn()
    _sync_cuda()
    times = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        _sync_cuda()
        times.append((time.perf_counter() - t0) * 1000.0)
    ms = np.asarray(times)
    mean = float(ms.mean())
    return {
        "ms_mean": mean,
        "ms_std": float(ms.std()),
        "ms_min": float(ms.min()),
        "fps": 1000.0 / mean if mean > 0 else math.inf,
        "iters": float(len(times)),
    }


BYTES_PER_MB = 10**6
"""splat4d's one MB: 10^6 bytes, in metrics.json, benchmarks and docs alike. Published evaluation scripts
often divide by 1024^2 (MiB); their numbers are 4.6% smaller than splat4d's for the same bytes."""


def file_size_mb(path: str | os.PathLike) -> float:
    """Size of one file in MB (`BYTES_PER_MB`)."""
    return Path(path).stat().st_size / BYTES_PER_MB


def dir_size_mb(path: str | os.PathLike) -> float:
    """Total size of the regular files under `path` (recursively; a file's own size) in MB (`BYTES_PER_MB`)."""
    p = Path(path)
    if p.is_file():
        return file_size_mb(p)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink()) / BYTES_PER_MB
