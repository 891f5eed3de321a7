"""Real priors for Diffusion² (extra `splat4d[gen]`): EDM denoisers over diffusers'
`UNetSpatioTemporalConditionModel`, loaded from `StableVideoDiffusionPipeline` directories.

- video prior: SVD (`stabilityai/stable-video-diffusion-img2vid(-xt)`), conditioned on one image through CLIP
  image embeddings and the image's VAE latent, with fps / motion bucket / noise-augmentation ids;
- multi-view prior: SV3D_p converted to the same layout, whose added ids are per view:
  (cond_aug, polar, azimuth) in radians, embedded 256 / 512 / 512 wide as in SV3D (or all
  `addition_time_embed_dim` wide in a conversion that projects 3·dim features).

Both work in the video model's VAE latent space (the SVD and SV3D VAEs are the same). diffusers and
transformers are imported on use, never when splat4d is imported.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as Fn
from torch import Tensor

from splat4d.errors import ConfigError

VIDEO_MODEL_ID = "stabilityai/stable-video-diffusion-img2vid-xt"
MULTIVIEW_MODEL_ID = "stabilityai/sv3d (sv3d_p.safetensors, converted to diffusers' StableVideoDiffusionPipeline layout)"
COMPONENTS = ("unet", "vae", "image_encoder", "feature_extractor")


@dataclass
class PriorSettings:
    """How a prior is conditioned (defaults: SVD-xt's pipeline and SV3D's sampling script)."""

    guidance_min: float = 1.0
    """Classifier-free guidance scale of the first frame/view."""
    guidance_max: float = 3.0
    """Guidance of the last frame (linear ramp) or of the middle view (triangle)."""
    guidance_shape: str = "linear"
    """`linear` (SVD) or `triangle` (SV3D) over the sequence."""
    fps: int = 6
    """SVD's fps id (the pipeline passes fps − 1 = 6 for 7 fps)."""
    motion_bucket_id: int = 127
    """SVD's motion id (more motion when higher)."""
    noise_aug: float = 0.02
    """Noise added to the conditioning image before it is encoded (also an added id)."""
    elevation_deg: float = 0.0
    """Multi-view prior: camera elevation of every view (the orbit's)."""


def video_settings() -> PriorSettings:
    return PriorSettings()


def multiview_settings(elevation_deg: float = 0.0) -> PriorSettings:
    return PriorSettings(guidance_max=2.5, guidance_shape="triangle", noise_aug=1e-5, elevation_deg=elevation_deg)


def guidance_scales(settings: PriorSettings, length: int, device, dtype) -> Tensor:
    lo, hi = settings.guidance_min, settings.guidance_max
    if settings.guidance_shape == "linear":
        g = torch.linspace(lo, hi, length, device=device)
    else:  # rises to hi at the middle of the sequence and back
        g = lo + (hi - lo) * (1 - (torch.linspace(-1, 1, length, device=device)).abs())
    return g.to(device, dtype)


class LatentSpace:
    """The VAE both priors share: images in [0, 1] ⇄ scaled latents (the sampler's space)."""

    def __init__(self, vae):
        self.vae = vae
        self.scale = float(vae.config.scaling_factor)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.channels = int(vae.config.latent_channels)

    @property
    def device(self):
        return next(self.vae.parameters()).device

    @property
    def dtype(self):
        return next(self.vae.parameters()).dtype

    def latent_shape(self, size: int) -> tuple[int, int, int]:
        if size % self.factor:
            raise ConfigError(f"image size {size} must be a multiple of the VAE's downsampling factor {self.factor}")
        return self.channels, size // self.factor, size // self.factor

    @torch.no_grad()
    def encode(self, images: Tensor, mode_only: bool = True, unscaled: bool = False) -> Tensor:
        """[N, 3, H, W] in [0, 1] → [N, C, h, w] latents (the distribution's mode, as SVD conditions)."""
        x = images.to(self.device, self.dtype) * 2 - 1
        z = self.vae.encode(x).latent_dist.mode()
        return z if unscaled else z * self.scale

    @torch.no_grad()
    def decode(self, latents: Tensor, chunk: int = 8) -> Tensor:
        """[N, C, h, w] scaled latents → [N, 3, H, W] in [0, 1] (decoded `chunk` frames at a time)."""
        out = []
        for lo in range(0, latents.shape[0], chunk):
            z = latents[lo : lo + chunk].to(self.device, self.dtype) / self.scale
            out.append(self.vae.decode(z, num_frames=z.shape[0]).sample)
        return ((torch.cat(out).float() + 1) / 2).clamp(0, 1)


def clip_input_size(feature_extractor) -> int:
    """The square size CLIP sees (the processor's crop size, else its shortest edge)."""
    for attr, key in (("crop_size", "height"), ("size", "shortest_edge"), ("size", "height")):
        size = getattr(feature_extractor, attr, None)
        value = size.get(key) if hasattr(size, "get") else getattr(size, key, None)
        if value:
            return int(value)
    return 224


class ImageConditioner:
    """CLIP image embeddings and noise-augmented VAE latents of conditioning images, cached per image (rows
    and columns keep their references for the whole sampling)."""

    def __init__(self, image_encoder, feature_extractor, space: LatentSpace, max_cached: int = 512):
        self.encoder, self.space = image_encoder, space
        self.size = clip_input_size(feature_extractor)
        self.mean = torch.tensor(feature_extractor.image_mean, device="cpu").view(1, 3, 1, 1)
        self.std = torch.tensor(feature_extractor.image_std, device="cpu").view(1, 3, 1, 1)
        self.cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        self.max_cached = max_cached

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] → [N, 1, D] CLIP image embeddings."""
        dev = next(self.encoder.parameters()).device
        x = Fn.interpolate(images.float(), size=(self.size, self.size), mode="bicubic", antialias=True,
                           align_corners=False).clamp(0, 1)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        dtype = next(self.encoder.parameters()).dtype
        return self.encoder(pixel_values=x.to(dev, dtype)).image_embeds[:, None]

    @torch.no_grad()
    def __call__(self, cond: Tensor, noise_aug: float) -> tuple[Tensor, Tensor]:
        """cond [B, C, h, w] scaled latents → (embeddings [B, 1, D], unscaled augmented latents [B, C, h, w])."""
        embs, lats = [], []
        for c in cond:
            key = (hashlib.sha1(c.detach().float().cpu().numpy().tobytes()).hexdigest(), float(noise_aug))
            if key not in self.cache:
                if len(self.cache) >= self.max_cached:
                    self.cache.pop(next(iter(self.cache)))
                image = self.space.decode(c[None])
                gen = torch.Generator().manual_seed(int(key[0][:8], 16))
                noisy = image * 2 - 1 + noise_aug * torch.randn(image.shape, generator=gen, device="cpu").to(image.device)
                latent = self.space.encode((noisy + 1) / 2, unscaled=True)
                self.cache[key] = (self.embed(image)[0], latent[0])
            e, z = self.cache[key]
            embs.append(e)
            lats.append(z)
        return torch.stack(embs), torch.stack(lats)


@contextmanager
def per_frame_embedding(unet, emb: Tensor):
    """Inside the block: every down, mid and up block of `unet` gets `emb` [B·L, D] as its time embedding
    instead of the per-sequence one diffusers repeats over frames (SV3D conditions each view on its camera)."""

    def swap(module, args, kwargs):
        kwargs["temb"] = emb
        return args, kwargs

    handles = [b.register_forward_pre_hook(swap, with_kwargs=True) for b in (*unet.down_blocks, unet.mid_block, *unet.up_blocks)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class SVDDenoiser:
    """The EDM x0-predictor of an SVD-family UNet (v-prediction with c_skip = 1/(σ²+1), c_out = −σ/√(σ²+1),
    c_in = 1/√(σ²+1), c_noise = ¼ ln σ), with classifier-free guidance (zero image embedding and latent)."""


    def __init__(self, unet, conditioner: ImageConditioner, settings: PriorSettings):
        self.unet, self.conditioner, self.settings = unet, conditioner, settings
        self.calls = 0

    def added_ids(self, batch: int, length: int, device, dtype) -> Tensor:
        s = self.settings
        return torch.tensor([[s.fps, s.motion_bucket_id, s.noise_aug]], device=device, dtype=dtype).expand(batch, 3)

    def order(self, length: int) -> Optional[Tensor]:
        """Permutation of the sequence into the UNet's frame order (None: as it is)."""
        return None

    def unet_output(self, inp: Tensor, c_noise: Tensor, emb: Tensor, ids: Tensor) -> Tensor:
        return self.unet(inp, c_noise, encoder_hidden_states=emb, added_time_ids=ids).sample

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, cond: Optional[Tensor]) -> Tensor:
        self.calls += 1
        b, length = x.shape[:2]
        dev, dt = x.device, next(self.unet.parameters()).dtype
        perm = self.order(length)
        perm = None if perm is None else perm.to(x.device)
        xs = x if perm is None else x[:, perm]
        s = sigma.to(dev).view(b, 1, 1, 1, 1).double()
        c_in, c_skip, c_out = (1 / (s**2 + 1).sqrt()), 1 / (s**2 + 1), -s / (s**2 + 1).sqrt()
        scaled = (xs * c_in).to(dt)
        ids = self.added_ids(b, length, dev, dt)
        c_noise = (0.25 * sigma.double().log()).to(dev, dt)
        zeros_lat = torch.zeros_like(scaled)
        if cond is None:
            emb = torch.zeros(b, 1, self.unet.config.cross_attention_dim, device=dev, dtype=dt)
            out = self.unet_output(torch.cat([scaled, zeros_lat], 2), c_noise, emb, ids)
        else:
            emb, lat = self.conditioner(cond, self.settings.noise_aug)
            lat = lat.to(dev, dt)[:, None].expand(-1, length, -1, -1, -1)
            inp = torch.cat([torch.cat([scaled, torch.zeros_like(lat)], 2), torch.cat([scaled, lat], 2)])
            embs = torch.cat([torch.zeros_like(emb), emb]).to(dev, dt)
            both = self.unet_output(inp, c_noise.repeat(2), embs, ids.repeat(2, *[1] * (ids.dim() - 1)))
            uncond, condl = both.chunk(2)
            g = guidance_scales(self.settings, length, dev, dt).view(1, length, 1, 1, 1)
            out = uncond + g * (condl - uncond)
        x0 = c_skip * xs.double() + c_out * out.double()
        if perm is not None:
            x0 = x0[:, torch.argsort(perm)]
        return x0.to(x.dtype)


class SV3DDenoiser(SVDDenoiser):
    """SV3D_p: view v of V sits at azimuth 360·v/V (view 0 = the reference view). SV3D orders its orbit so the
    input view comes last, with azimuths measured from it; the sequence is rolled into that order and back."""


    def order(self, length: int) -> Tensor:
        return (torch.arange(length, device="cpu") + 1) % length  # UNet frame k shows view (k + 1) mod V

    def added_ids(self, batch: int, length: int, device, dtype) -> Tensor:
        views = (torch.arange(length, device="cpu") + 1) % length
        azimuth = torch.deg2rad((360.0 * views / length) % 360)
        polar = torch.full((length,), math.radians(90.0 - self.settings.elevation_deg), device="cpu")
        aug = torch.full((length,), self.settings.noise_aug, device="cpu")
        ids = torch.stack([aug, polar, azimuth], 1).to(device, dtype)  # [L, 3]
        return ids[None].expand(batch, length, 3)

    def id_widths(self) -> tuple[int, int, int]:
        cfg = self.unet.config
        d, total = cfg.addition_time_embed_dim, cfg.projection_class_embeddings_input_dim
        if total == 3 * d:
            return d, d, d
        if total == d + 4 * d:  # SV3D: cond_aug 256, polar 512, azimuth 512
            return d, 2 * d, 2 * d
        raise ConfigError(f"multi-view UNet projects {total} added features; SV3D layouts take 3 or 5 times "
                          f"addition_time_embed_dim ({d})")

    def unet_output(self, inp: Tensor, c_noise: Tensor, emb: Tensor, ids: Tensor) -> Tensor:
        from diffusers.models.embeddings import Timesteps

        unet = self.unet
        b, length = inp.shape[:2]
        parts = [Timesteps(w, True, 0)(ids[..., k].reshape(-1)).view(b * length, w)
                 for k, w in enumerate(self.id_widths())]
        aug = unet.add_embedding(torch.cat(parts, 1).to(inp.dtype))
        t_emb = unet.time_embedding(unet.time_proj(c_noise.expand(b)).to(inp.dtype))
        per_frame = t_emb.repeat_interleave(length, 0) + aug
        ids0 = torch.zeros(b, unet.config.projection_class_embeddings_input_dim // unet.config.addition_time_embed_dim,
                           device=inp.device, dtype=inp.dtype)
        with per_frame_embedding(unet, per_frame):
            return unet(inp, c_noise, encoder_hidden_states=emb, added_time_ids=ids0).sample


@dataclass
class Priors:
    video: SVDDenoiser
    multiview: SV3DDenoiser
    space: LatentSpace


def _missing(path: Optional[Path], which: str, model_id: str) -> str:
    if path is None:
        where = f"no {which} model given"
    elif not Path(path).exists() and not looks_like_repo_id(str(path)):
        where = f"no directory {path}"
    else:
        where = f"{path} has no loadable pipeline"
    return (f"{where}: download {model_id} and pass its directory (a StableVideoDiffusionPipeline layout with "
            f"{', '.join(COMPONENTS)}) as --{which}-model, or leave it in the Hugging Face hub cache")


def quiet_hf_logging() -> None:
    """diffusers / transformers print progress bars and advice on every load; splat4d shows its own."""
    import diffusers
    import transformers

    for lib in (diffusers, transformers):
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()


def looks_like_repo_id(name: str) -> bool:
    """`org/name` (looked up in the hub cache, offline), not a filesystem path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(parts[0]).exists()


def load_pipeline_dir(path: Optional[Path], which: str, model_id: str, device, dtype):
    """A StableVideoDiffusionPipeline from a local directory (or the hub cache for a model id), offline only."""
    try:
        quiet_hf_logging()
        from diffusers import StableVideoDiffusionPipeline
    except ImportError:
        raise ConfigError("Diffusion² needs the generation extra: pip install 'splat4d[gen]'") from None
    if path is None or not Path(path).is_dir() and not looks_like_repo_id(str(path)):
        raise ConfigError(_missing(path, which, model_id))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = StableVideoDiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise ConfigError(_missing(Path(path), which, model_id) + f" ({str(e).splitlines()[0][:200]})") from None
    for name in COMPONENTS:
        if getattr(pipe, name, None) is None:
            raise ConfigError(f"{path}: the pipeline has no {name}; " + _missing(Path(path), which, model_id))
    for m in (pipe.unet, pipe.vae, pipe.image_encoder):
        m.to(device, dtype)
        m.eval().requires_grad_(False)
    return pipe


def load_priors(video_dir, multiview_dir, device="cpu", dtype=torch.float32, elevation_deg: float = 0.0) -> Priors:
    """The video and multi-view priors over one latent space (the video model's VAE)."""
    vpipe = load_pipeline_dir(video_dir, "video", VIDEO_MODEL_ID, device, dtype)
    mpipe = load_pipeline_dir(multiview_dir, "multiview", MULTIVIEW_MODEL_ID, device, dtype)
    space = LatentSpace(vpipe.vae)
    for name, unet in (("video", vpipe.unet), ("multiview", mpipe.unet)):
        if unet.config.in_channels != 2 * space.channels or unet.config.out_channels != space.channels:
            raise ConfigError(f"the {name} UNet takes {unet.config.in_channels} → {unet.config.out_channels} channels; "
                              f"the shared VAE has {space.channels} latent channels (need {2 * space.channels} → "
                              f"{space.channels}): the two models do not share a latent space")
    video = SVDDenoiser(vpipe.unet, ImageConditioner(vpipe.image_encoder, vpipe.feature_extractor, space), video_settings())
    mv = SV3DDenoiser(mpipe.unet, ImageConditioner(mpipe.image_encoder, mpipe.feature_extractor, space),
                      multiview_settings(elevation_deg))
    mv.id_widths()  # refuse an unknown added-id layout now, not at the first step
    return Priors(video, mv, space)
