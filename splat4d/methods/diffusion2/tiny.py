"""Tiny randomly initialised priors of the real classes (SVD-layout pipelines), for tests, the benchmark and a
download-free end-to-end run: `python -m splat4d.methods.diffusion2.tiny DIR` writes DIR/video and
DIR/multiview, which `splat4d generate diffusion2 --video-model DIR/video --multiview-model DIR/multiview` loads.
They produce noise-like images: they exercise the code, not the quality."""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def tiny_pipeline(seed: int, multiview: bool = False):
    """A StableVideoDiffusionPipeline of about a million parameters (VAE downsampling 2, 4 latent channels)."""
    from splat4d.methods.diffusion2.priors import quiet_hf_logging

    quiet_hf_logging()
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    time_dim = 8
    unet = UNetSpatioTemporalConditionModel(
        sample_size=16, in_channels=8, out_channels=4, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=(5 if multiview else 3) * time_dim,
        layers_per_block=1, cross_attention_dim=16, num_attention_heads=(2, 4), num_frames=4)
    vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, block_out_channels=(32, 32), layers_per_block=1,
                                       latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 2)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, projection_dim=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8))
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    scheduler = EulerDiscreteScheduler(prediction_type="v_prediction", use_karras_sigmas=True, sigma_min=0.002,
                                       sigma_max=700.0, timestep_type="continuous")
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=extractor)


def write_tiny_priors(out: Path) -> tuple[Path, Path]:
    out = Path(out)
    video, mv = out / "video", out / "multiview"
    tiny_pipeline(1).save_pretrained(video)
    tiny_pipeline(2, multiview=True).save_pretrained(mv)
    return video, mv


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m splat4d.methods.diffusion2.tiny DIR", file=sys.stderr)
        sys.exit(2)
    v, m = write_tiny_priors(Path(sys.argv[1]))
    print(f"wrote tiny priors: {v} {m}")
