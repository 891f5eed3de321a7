"""The diffusers adapters: tiny randomly initialised SVD-layout pipelines are built, saved with
save_pretrained, loaded through `load_priors` and denoise as EDM x0-predictors."""

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from splat4d.errors import ConfigError  # noqa: E402
from splat4d.methods.diffusion2.priors import (SV3DDenoiser, SVDDenoiser, load_priors,  # noqa: E402
                                               multiview_settings, video_settings)
from splat4d.methods.diffusion2.tiny import tiny_pipeline, write_tiny_priors  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    return write_tiny_priors(tmp_path_factory.mktemp("priors"))


@pytest.fixture(scope="module")
def priors(tiny_dirs):
    return load_priors(*tiny_dirs)


def test_loaded_priors_denoise_in_the_shared_latent_space(priors):
    shape = priors.space.latent_shape(32)
    assert shape == (4, 16, 16)
    image = priors.space.encode(torch.rand(1, 3, 32, 32))[0]
    x = torch.randn(2, 3, *shape)
    for d in (priors.video, priors.multiview):
        out = d(x, torch.tensor([5.0, 0.5]), image.expand(2, -1, -1, -1))
        assert out.shape == x.shape and torch.isfinite(out).all()
        # EDM preconditioning: at σ → 0 the x0-prediction is the input itself
        tiny = d(x, torch.tensor([1e-4, 1e-4]), None)
        torch.testing.assert_close(tiny, x, atol=2e-4, rtol=0)


def test_guidance_one_is_the_conditional_prediction(priors):
    shape = priors.space.latent_shape(32)
    cond = priors.space.encode(torch.rand(1, 3, 32, 32))
    x = torch.randn(1, 3, *shape)
    d = SVDDenoiser(priors.video.unet, priors.video.conditioner, video_settings())
    d.settings.guidance_min = d.settings.guidance_max = 1.0
    guided = d(x, torch.tensor([2.0]), cond)
    emb, lat = d.conditioner(cond, d.settings.noise_aug)
    s = torch.tensor(2.0)
    inp = torch.cat([x / (s**2 + 1).sqrt(), lat[:, None].expand(-1, 3, -1, -1, -1)], 2)
    raw = d.unet(inp, 0.25 * s.log().view(1), encoder_hidden_states=emb, added_time_ids=d.added_ids(1, 3, x.device, x.dtype)).sample
    want = x / (s**2 + 1) - s / (s**2 + 1).sqrt() * raw
    torch.testing.assert_close(guided, want, atol=1e-5, rtol=1e-4)


def test_per_frame_camera_ids_reproduce_diffusers_when_all_frames_share_them(priors):
    """The SV3D path computes each frame's added embedding itself; with one id vector for every frame it must
    equal diffusers' own forward (which repeats one embedding over the frames)."""
    unet = priors.video.unet  # 3 ids of equal width
    mv = SV3DDenoiser(unet, priors.video.conditioner, multiview_settings())
    inp = torch.randn(2, 3, 8, 16, 16)
    emb = torch.randn(2, 1, unet.config.cross_attention_dim)
    t = torch.tensor([0.3, -0.2])
    ids = torch.tensor([[1e-5, 1.2, 0.7], [0.02, 0.4, 2.0]])
    ours = mv.unet_output(inp, t, emb, ids[:, None].expand(2, 3, 3))
    ref = unet(inp, t, encoder_hidden_states=emb, added_time_ids=ids).sample
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    # and the camera of each view matters: change one view's azimuth, only then the output changes
    ids2 = ids[:, None].expand(2, 3, 3).clone()
    ids2[:, 1, 2] += 1.0
    assert not torch.allclose(mv.unet_output(inp, t, emb, ids2), ours)


def test_sv3d_puts_the_reference_view_last_and_returns_view_order(priors):
    mv = priors.multiview
    assert mv.order(4).tolist() == [1, 2, 3, 0]
    ids = mv.added_ids(1, 4, "cpu", torch.float32)[0]
    # UNet frame 3 shows view 0 at azimuth 0; frame 0 shows view 1 at 90 degrees
    assert float(ids[3, 2]) == pytest.approx(0.0) and float(ids[0, 2]) == pytest.approx(torch.pi / 2)
    assert float(ids[0, 1]) == pytest.approx(torch.pi / 2)  # polar of elevation 0
    # (the σ → 0 check of the first test shows the output comes back in view order)


def test_missing_weights_name_the_models(tmp_path, tiny_dirs):
    with pytest.raises(ConfigError, match="stable-video-diffusion.*--video-model"):
        load_priors(tmp_path / "none", tiny_dirs[1])
    with pytest.raises(ConfigError, match="sv3d.*--multiview-model"):
        load_priors(tiny_dirs[0], tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no loadable pipeline"):
        load_priors(tmp_path / "empty", tiny_dirs[1])


def test_mismatched_latent_spaces_are_refused(tmp_path, tiny_dirs):
    pipe = tiny_pipeline(3)
    from diffusers import UNetSpatioTemporalConditionModel

    cfg = dict(pipe.unet.config)
    cfg.update(in_channels=6, out_channels=3)
    pipe.unet = UNetSpatioTemporalConditionModel.from_config(cfg)
    pipe.register_modules(unet=pipe.unet)
    pipe.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="do not share a latent space"):
        load_priors(tiny_dirs[0], tmp_path / "other")
