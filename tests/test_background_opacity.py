"""The background-opacity term: what it counts, and that it reaches the Gaussian methods' loss."""

import pytest
import torch

from splat4d.data import load_scene
from splat4d.errors import ConfigError
from splat4d.methods.static import StaticConfig, StaticGaussians
from splat4d.train.losses import background_opacity
from splat4d.train.trainer import TrainConfig, Trainer


def test_counts_opacity_only_where_the_target_shows_the_background():
    images = torch.zeros(1, 2, 2, 3)
    images[0, 0, 0] = torch.tensor([0.9, 0.2, 0.1])  # foreground
    images[0, 1, 1] = torch.tensor([0.05, 0.05, 0.05])  # within the threshold of black: background
    alpha = torch.tensor([[[1.0, 0.5], [0.25, 0.5]]])
    assert float(background_opacity(alpha, images, torch.zeros(3))) == (0.5 + 0.25 + 0.5) / 4


def test_the_gaussian_methods_add_it_to_their_loss(tmp_path):
    scene = load_scene("synthetic:tiny")
    method = StaticGaussians.from_scene(scene, StaticConfig(lambda_background=0.5), torch.Generator().manual_seed(0))
    tr = Trainer(method, scene, TrainConfig(iters=1, save_every=0, device="cpu"), tmp_path, {"method": "static"},
                 torch.device("cpu"))
    batch = tr._next_batch()
    outs = [method.render(batch.cameras, float(batch.times[0]), batch.background)]
    with_term, logs = method.loss(batch, outs, 0)
    method.cfg.lambda_background = 0.0
    without, _ = method.loss(batch, outs, 0)
    expected = background_opacity(outs[0].alpha[..., 0], batch.images, batch.background)
    assert logs["background_alpha"] > 0
    assert float((with_term - without).detach()) == pytest.approx(0.5 * float(expected.detach()), rel=1e-5)
    tr.image_loader.close()


def test_a_negative_weight_is_refused():
    with pytest.raises(ConfigError, match="lambda_background"):
        StaticConfig(lambda_background=-1.0).validate()
