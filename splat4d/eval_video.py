"""The Consistent4D evaluation protocol: CLIP, LPIPS, FVD and FID-VID of rendered novel-view videos.

Each camera of the evaluated split is one ground-truth video (views ordered by time), rendered by the run
at the same times. CLIP: cosine similarity of CLIP ViT-B/32 image embeddings (Consistent4D's
`compute_image_level_metrics.py`). LPIPS: `splat4d.metrics.lpips` (VGG). FVD: Fréchet distance of the I3D
features of rendered vs ground-truth clips, with StyleGAN-V's TorchScript `i3d_torchscript.pt` called as
`model(x, rescale=False, resize=True, return_features=True)` on [B, 3, T, H, W] in [-1, 1]. FID-VID: the
same over 3D ResNet-50 features (DisCo's "FVD-3DRN50", `splat4d.resnet3d`). docs/metrics.md says more.

Consistent4D's `compute_fvd.py` fits its Gaussians to one feature per view: the covariance is NaN. Here each
video is cut into clips (`clip_windows`), one feature per clip; below 2 clips, or without a metric's
weights, the metric is "unavailable: <reason>". transformers is imported only when CLIP is loaded.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from splat4d import metrics
from splat4d.errors import WeightsNotFound

CLIP_ENV = "SPLAT4D_CLIP_MODEL"
I3D_ENV = "SPLAT4D_I3D_WEIGHTS"
FIDVID_ENV = "SPLAT4D_FIDVID_WEIGHTS"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_LEN = 16
"""Frames per FVD / FID-VID clip (FVD-16, DisCo's sample_duration)."""


class VideoMetricUnavailable(WeightsNotFound):
    """A video metric's network is missing or unusable; the message starts with "unavailable:"."""


# ----------------------------------------------------------------------------- Fréchet distance
def _psd_eigh(a: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of a symmetric PSD matrix [D, D] with eigenvalues below D * eps * max (rounding
    of a singular matrix, whose square roots would add ~1e-8 each) set to 0."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    tol = a.shape[0] * torch.finfo(w.dtype).eps * w.abs().max().clamp(min=1e-300)
    return torch.where(w > tol, w, torch.zeros_like(w)), v


def gaussian_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D]; needs N >= 2."""
    f = feats.detach().double().reshape(feats.shape[0], -1)
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {f.shape[0]}")
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians, in float64.

    Tr((S1 S2)^(1/2)) is computed as Tr((A S2 A)^(1/2)) with A = S1^(1/2): the same eigenvalues, but of a
    symmetric PSD matrix, so eigh applies and singular covariances (fewer samples than dimensions) give no
    complex parts or NaN. Clamped at 0 against rounding."""
    mu1, mu2, s1, s2 = (torch.as_tensor(x, dtype=torch.float64) for x in (mu1, mu2, sigma1, sigma2))
    w, v = _psd_eigh(s1)
    a = (v * w.sqrt()) @ v.T  # S1^(1/2)
    tr_covmean = _psd_eigh(a @ s2 @ a)[0].sqrt().sum()
    d = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_covmean
    return max(float(d), 0.0)


def clip_windows(num_frames: int, clip_len: int = CLIP_LEN) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of the clips of one video.

    A video of at least `clip_len` frames gives windows of `clip_len` with stride clip_len // 2 (the last
    one ending at the last frame); a shorter one gives every window of ceil(T / 2) frames (stride 1), so a
    video of T >= 2 frames yields at least 2 clips. Clips shorter than `clip_len` are padded by the caller.
    """
    if num_frames < 1:
        return []
    if num_frames >= clip_len:
        starts = list(range(0, num_frames - clip_len + 1, max(clip_len // 2, 1)))
        if starts[-1] != num_frames - clip_len:
            starts.append(num_frames - clip_len)
        return [(s, s + clip_len) for s in starts]
    n = math.ceil(num_frames / 2)
    return [(s, s + n) for s in range(num_frames - n + 1)]


def video_clips(video: Tensor, clip_len: int = CLIP_LEN) -> Tensor:
    """Frames [T, H, W, 3] -> clips [N, 3, clip_len, H, W] of `clip_windows`, each padded to `clip_len` by
    repeating its last frame (as DisCo pads a video's last segment)."""
    clips = []
    for s, e in clip_windows(video.shape[0], clip_len):
        c = video[s:e]
        c = torch.cat([c, c[-1:].expand(clip_len - c.shape[0], *c.shape[1:])]) if c.shape[0] < clip_len else c
        clips.append(c.permute(3, 0, 1, 2))
    return torch.stack(clips) if clips else video.new_zeros(0, 3, clip_len, *video.shape[1:3])


def fvd_of_features(pred: Tensor, gt: Tensor, name: str) -> float | str:
    """Fréchet distance of feature sets [N, D] (rendered, ground truth), or "unavailable: ..." below 2."""
    n = min(pred.shape[0], gt.shape[0])
    if n < 2:
        return (f"unavailable: {name} needs at least 2 clips for a covariance, the split gives {n} (one camera "
                "with a single frame); evaluate a split with more frames or cameras")
    return frechet_distance(*gaussian_stats(pred), *gaussian_stats(gt))


def _local_path(value: str | os.PathLike | None, env: str, what: str, flag: str, get: str) -> Path:
    path = value if value is not None else os.environ.get(env) or None
    if path is None:
        raise VideoMetricUnavailable(f"unavailable: no {what} (pass {flag} PATH or set {env}=PATH; get {get}, "
                                     "see docs/metrics.md)")
    path = Path(path).expanduser()
    if not path.exists():
        raise VideoMetricUnavailable(f"unavailable: {what} {path} not found ({flag} / {env}; get {get})")
    return path


# ----------------------------------------------------------------------------- CLIP
def _processor_config(model_dir: str) -> dict:
    """preprocessor_config.json of a local folder or a cached hub id, {} when there is none."""
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        try:
            from transformers.utils import cached_file

            found = cached_file(model_dir, "preprocessor_config.json", local_files_only=True,
                                _raise_exceptions_for_missing_entries=False)
        except Exception:  # no cache entry, offline, odd ids: fall back to CLIP's defaults
            found = None
        if not found:
            return {}
        path = Path(found)
    return json.loads(path.read_text())


def load_clip(model: str | os.PathLike | None = None, device=None):
    """(CLIPVisionModelWithProjection, preprocessing dict) from a local folder or a hub-cache id (offline).

    Preprocessing follows `CLIPImageProcessor`: shorter side to `size`, centre crop `crop`, normalise with
    `mean`/`std`, read from preprocessor_config.json when present, else CLIP's constants at the model's
    image size. Raises `VideoMetricUnavailable` naming the flag and the model to get."""
    get = "a local copy of openai/clip-vit-base-patch32"
    name = model if model is not None else os.environ.get(CLIP_ENV) or None
    if name is None:
        raise VideoMetricUnavailable(f"unavailable: no CLIP model (pass --clip-model DIR or set {CLIP_ENV}=DIR; "
                                     f"get {get}, see docs/metrics.md)")
    name = str(Path(name).expanduser()) if Path(str(name)).expanduser().exists() else str(name)
    try:
        from transformers import CLIPVisionModelWithProjection
    except ImportError:
        raise VideoMetricUnavailable("unavailable: CLIP needs transformers (pip install 'splat4d[gen]')") from None
    try:
        net = CLIPVisionModelWithProjection.from_pretrained(name, local_files_only=True)
    except Exception as e:  # OSError (missing), ValueError/KeyError (not a CLIP checkpoint), ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VideoMetricUnavailable(f"unavailable: cannot load CLIP model {name!r} ({first}); --clip-model / "
                                     f"{CLIP_ENV} must name {get}") from None
    cfg, image_size = _processor_config(name), int(net.config.image_size)
    size, crop = cfg.get("size", image_size), cfg.get("crop_size", image_size)
    prep = {
        "size": int(size["shortest_edge"] if isinstance(size, dict) else size),
        "crop": int(crop["height"] if isinstance(crop, dict) else crop),
        "mean": tuple(cfg.get("image_mean", CLIP_MEAN)),
        "std": tuple(cfg.get("image_std", CLIP_STD)),
    }
    return net.to(device or "cpu").eval().requires_grad_(False), prep


def clip_preprocess(images: Tensor, prep: dict) -> Tensor:
    """Images [B, H, W, 3] in [0, 1] -> pixel values [B, 3, crop, crop]: bicubic (antialiased) resize of the
    shorter side to `size`, clamp to [0, 1] (as the uint8 images CLIPImageProcessor sees), centre crop,
    normalise."""
    x = images.float().permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    s = prep["size"]
    size = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)  # the long side floored, as transformers does
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    c = prep["crop"]
    top, left = (x.shape[-2] - c) // 2, (x.shape[-1] - c) // 2
    x = x[..., top : top + c, left : left + c]
    mean, std = torch.tensor(prep["mean"]).view(1, 3, 1, 1), torch.tensor(prep["std"]).view(1, 3, 1, 1)
    return (x - mean.to(x)) / std.to(x)


@torch.no_grad()
def clip_similarity(pred: Tensor, gt: Tensor, net, prep: dict) -> Tensor:
    """Cosine similarity [B] of the CLIP image embeddings of images [B, H, W, 3] in [0, 1]."""
    dev = next(net.parameters()).device
    e1 = net(pixel_values=clip_preprocess(pred, prep).to(dev)).image_embeds
    e2 = net(pixel_values=clip_preprocess(gt, prep).to(dev)).image_embeds
    return F.cosine_similarity(e1, e2, dim=-1).cpu()


# ----------------------------------------------------------------------------- I3D and 3D ResNet
def load_i3d(weights: str | os.PathLike | None = None, device=None):
    """The TorchScript I3D (`i3d_torchscript.pt`) from `weights` or $SPLAT4D_I3D_WEIGHTS."""
    path = _local_path(weights, I3D_ENV, "I3D weights", "--i3d-weights",
                       "i3d_torchscript.pt, StyleGAN-V's TorchScript I3D")
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript, the format the public I3D ships in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device or "cpu").eval()
    except Exception as e:  # not a TorchScript archive
        raise VideoMetricUnavailable(f"unavailable: {path} is not a TorchScript I3D ({type(e).__name__}); "
                                     "--i3d-weights wants i3d_torchscript.pt") from None


@torch.no_grad()
def i3d_features(net, clips: Tensor, batch: int = 8) -> Tensor:
    """Clips [N, 3, T, H, W] in [0, 1] -> I3D features [N, D] (StyleGAN-V's call; [-1, 1] input)."""
    dev = next(iter(net.parameters()), torch.empty(0)).device
    out = [net(c.to(dev) * 2 - 1, rescale=False, resize=True, return_features=True).cpu()
           for c in clips.split(batch)]
    return torch.cat(out).flatten(1)


def load_fidvid(weights: str | os.PathLike | None = None, device=None):
    """The 3D ResNet of FID-VID from a state dict (`resnet-50-kinetics.pth`: {"state_dict": ...} with
    `module.` prefixes, or a plain state dict) named by `weights` or $SPLAT4D_FIDVID_WEIGHTS."""
    from splat4d.resnet3d import resnet3d_from_state_dict

    path = _local_path(weights, FIDVID_ENV, "FID-VID weights", "--fidvid-weights",
                       "resnet-50-kinetics.pth of Hara et al.'s 3D-ResNets-PyTorch")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        net = resnet3d_from_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    except Exception as e:  # unreadable, not a dict, missing keys, wrong shapes
        raise VideoMetricUnavailable(f"unavailable: {path} is not a 3D ResNet state dict ({type(e).__name__}: "
                                     f"{str(e)[:120]}); --fidvid-weights wants resnet-50-kinetics.pth") from None
    return net.to(device or "cpu").requires_grad_(False)


# ----------------------------------------------------------------------------- the protocol
@torch.no_grad()
def render_videos(method, scene, split: str) -> list[tuple[Tensor, Tensor]]:
    """(rendered, ground truth) frames [T, H, W, 3] in [0, 1] per camera of `split`, ordered by time."""
    views = scene.split(split)
    cams = scene.cameras(split)
    bg = torch.tensor(scene.background, dtype=torch.float32, device=method.device)
    by_cam: dict[int, list[int]] = {}
    for i, v in enumerate(views):
        by_cam.setdefault(v.cam_id, []).append(i)
    videos = []
    for cam in sorted(by_cam):
        idx = sorted(by_cam[cam], key=lambda i: views[i].time)
        pred = [method.render(cams[i].to(method.device), float(views[i].time), bg).rgb[0].clamp(0, 1).cpu()
                for i in idx]
        videos.append((torch.stack(pred), torch.stack([scene.image(views[i]) for i in idx]).float()))
    return videos


def _metric(fn):
    """fn() or its "unavailable: ..." message."""
    try:
        return fn()
    except VideoMetricUnavailable as e:
        return str(e)


def _fvd_like(load, features, videos, clip_len: int, name: str, notes: dict):
    net = load()
    pred = torch.cat([features(net, video_clips(p, clip_len)) for p, _ in videos])
    gt = torch.cat([features(net, video_clips(g, clip_len)) for _, g in videos])
    value = fvd_of_features(pred, gt, name)
    if isinstance(value, float) and pred.shape[0] <= pred.shape[1]:
        notes[name] = (f"{pred.shape[0]} clips of {clip_len} frames for {pred.shape[1]}-d features: the covariances "
                       "are singular (the Fréchet distance is defined but a small-sample estimate, not comparable "
                       "with FVDs published over thousands of clips)")
    return value


def evaluate_video(method, scene, split: str, clip_model=None, i3d_weights=None, fidvid_weights=None,
                   lpips_weights=None, clip_len: int = CLIP_LEN) -> dict:
    """The Consistent4D metrics of `method` on `split`: {"clip", "lpips", "fvd", "fid_vid"} (numbers or
    "unavailable: ..." strings), "videos", "frames", "clips" and "notes".

    CLIP and LPIPS are means over a video's frames, then over videos (Consistent4D's per-view averages);
    FVD and FID-VID are Fréchet distances over the clips of all videos (`clip_windows`)."""
    from splat4d.resnet3d import resnet3d_features

    videos = render_videos(method, scene, split)
    dev = method.device
    notes: dict[str, str] = {}

    def clip_score():
        net, prep = load_clip(clip_model, dev)
        return sum(float(clip_similarity(p, g, net, prep).mean()) for p, g in videos) / len(videos)

    def lpips_score():
        ok, reason = metrics.lpips_status(weights=lpips_weights)
        if not ok:
            raise VideoMetricUnavailable(reason if reason.startswith("unavailable") else f"unavailable: {reason}")
        per_video = [sum(metrics.lpips(p[i], g[i], weights=lpips_weights) for i in range(len(p))) / len(p)
                     for p, g in videos]
        return sum(per_video) / len(per_video)

    result = {
        "protocol": "consistent4d",
        "videos": len(videos),
        "frames": sum(len(p) for p, _ in videos),
        "clips": sum(len(clip_windows(len(p), clip_len)) for p, _ in videos),
        "clip_len": clip_len,
        "clip": _metric(clip_score),
        "lpips": _metric(lpips_score),
        "fvd": _metric(lambda: _fvd_like(lambda: load_i3d(i3d_weights, dev), i3d_features, videos, clip_len,
                                         "fvd", notes)),
        "fid_vid": _metric(lambda: _fvd_like(lambda: load_fidvid(fidvid_weights, dev), resnet3d_features, videos,
                                             clip_len, "fid_vid", notes)),
    }
    result["notes"] = notes
    return result
