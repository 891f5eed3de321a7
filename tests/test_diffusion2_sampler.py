"""Diffusion² sampler: with exact denoisers for i.i.d. Gaussian pixels every Euler step is linear, so the
matrix's mean and std have a closed form for any step count, noise schedule, weight s and rollback count."""

import math

import pytest
import torch

from splat4d.errors import ConfigError
from splat4d.methods.diffusion2 import edm_sigmas, sample_image_matrix

V, F, SHAPE = 4, 4, (1, 32, 32)


def gaussian_denoiser(mu: float, tau: float, calls: list | None = None):
    """The exact x0-predictor for data N(mu, tau²) per pixel: E[x0 | x] = mu + tau²/(tau² + σ²)(x − mu)."""

    def denoise(x, sigma, cond):
        if calls is not None:
            calls.append((x.shape, None if cond is None else cond.clone()))
        s2 = sigma.view(-1, *[1] * (x.dim() - 1)).double() ** 2
        return (mu + tau**2 / (tau**2 + s2) * (x.double() - mu)).to(x.dtype)

    return denoise


def closed_form(sigmas, s, video, multiview, rollback):
    """Mean and std of every element after Algorithm 1 with exact denoisers (video = (mu, tau), ...); s is one
    number or one per step."""
    m, v = 0.0, float(sigmas[0]) ** 2
    for i in range(len(sigmas) - 1):
        s_i = s[i] if isinstance(s, list) else s
        hi, lo = float(sigmas[i]), float(sigmas[i + 1])
        h = (lo - hi) / hi
        av, am = hi**2 / (video[1] ** 2 + hi**2), hi**2 / (multiview[1] ** 2 + hi**2)
        a = 1 + h * (s_i * av + (1 - s_i) * am)
        b = -h * (s_i * av * video[0] + (1 - s_i) * am * multiview[0])
        for j in range(2 if i < rollback else 1):
            m, v = a * m + b, a * a * v
            if j == 0 and i < rollback:
                v += (hi - lo) ** 2
    return m, math.sqrt(v)


def sample(s=0.5, steps=20, rollback=5, video=(0.3, 0.5), multiview=(-0.2, 0.8), seed=0, **kw):
    return sample_image_matrix(gaussian_denoiser(*video), gaussian_denoiser(*multiview), V, F, SHAPE, num_steps=steps,
                               s=s, rollback_steps=rollback, generator=torch.Generator().manual_seed(seed), **kw)


def assert_moments(x, mean, std):
    n = x.numel()
    assert abs(float(x.mean()) - mean) < 4 * std / math.sqrt(n) + 1e-6
    assert abs(float(x.std()) - std) < 4 * std / math.sqrt(2 * n) + 1e-6


@pytest.mark.parametrize("steps,rollback,s", [(20, 0, 0.5), (20, 5, 0.5), (7, 7, 0.3), (50, 10, 0.8)])
def test_matches_the_closed_form(steps, rollback, s):
    x = sample(s=s, steps=steps, rollback=rollback)
    assert x.shape == (V, F, *SHAPE)
    mean, std = closed_form(edm_sigmas(steps), s, (0.3, 0.5), (-0.2, 0.8), rollback)
    assert_moments(x, mean, std)


def test_per_step_schedule_matches_the_closed_form():
    steps = 12
    sched = torch.linspace(0.9, 0.1, steps)
    x = sample(s=sched, steps=steps, rollback=3)
    assert_moments(x, *closed_form(edm_sigmas(steps), sched.tolist(), (0.3, 0.5), (-0.2, 0.8), 3))


def test_std_approaches_the_data_without_rollback_and_is_lower_with_it():
    same = (0.1, 0.6)
    no_rb = closed_form(edm_sigmas(400), 0.5, same, same, 0)[1]
    with_rb = closed_form(edm_sigmas(400), 0.5, same, same, 5)[1]
    assert abs(no_rb - 0.6) < 0.01 and with_rb < no_rb - 0.01
    x = sample(s=0.5, steps=60, rollback=5, video=same, multiview=same)
    assert_moments(x, *closed_form(edm_sigmas(60), 0.5, same, same, 5))
    assert float(x.std()) < 0.6 - 0.01


def test_s_one_ignores_the_multiview_prior_and_s_zero_the_video_prior():
    a = sample(s=1.0, multiview=(-0.2, 0.8))
    b = sample(s=1.0, multiview=(5.0, 0.1))
    assert torch.equal(a, b)
    assert_moments(a, *closed_form(edm_sigmas(20), 1.0, (0.3, 0.5), (0.0, 1.0), 5))
    c = sample(s=0.0, video=(0.3, 0.5))
    d = sample(s=0.0, video=(-4.0, 2.0))
    assert torch.equal(c, d)
    assert_moments(c, *closed_form(edm_sigmas(20), 0.0, (0.0, 1.0), (-0.2, 0.8), 5))


@pytest.mark.parametrize("chunk,per_batch", [(None, 1), (3, 2), (1, 4)])
def test_denoiser_calls_are_steps_plus_rollbacks(chunk, per_batch):
    rows, cols = [], []
    steps, rollback = 6, 2
    out = sample_image_matrix(gaussian_denoiser(0, 1, rows), gaussian_denoiser(0, 1, cols), V, F, SHAPE,
                              num_steps=steps, rollback_steps=rollback, chunk=chunk,
                              generator=torch.Generator().manual_seed(1))
    assert len(rows) == len(cols) == (steps + rollback) * per_batch
    assert rows[0][0][1:] == (F, *SHAPE) and cols[0][0][1:] == (V, *SHAPE)
    whole = sample_image_matrix(gaussian_denoiser(0, 1), gaussian_denoiser(0, 1), V, F, SHAPE, num_steps=steps,
                                rollback_steps=rollback, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, whole)  # chunking changes nothing but memory


def test_rollback_renoises_with_std_of_the_sigma_difference():
    """D(x) = x makes every step a no-op, so only the start noise and the rollback noise remain."""
    identity = lambda x, sigma, cond: x  # noqa: E731
    steps, rollback = 10, 4
    sig = edm_sigmas(steps, sigma_max=3.0)
    x = sample_image_matrix(identity, identity, 8, 8, (1, 32, 32), num_steps=steps, sigma_max=3.0,
                            rollback_steps=rollback, generator=torch.Generator().manual_seed(2))
    want = math.sqrt(float(sig[0]) ** 2 + sum((float(sig[i]) - float(sig[i + 1])) ** 2 for i in range(rollback)))
    assert_moments(x, 0.0, want)


def test_rows_and_columns_are_conditioned_on_their_references():
    rows, cols = [], []
    ref_views = torch.arange(V, dtype=torch.float32).view(V, 1, 1, 1).expand(V, *SHAPE).clone()
    ref_video = 10 + torch.arange(F, dtype=torch.float32).view(F, 1, 1, 1).expand(F, *SHAPE).clone()
    sample_image_matrix(gaussian_denoiser(0, 1, rows), gaussian_denoiser(0, 1, cols), V, F, SHAPE, ref_views=ref_views,
                        ref_video=ref_video, num_steps=3, rollback_steps=0)
    assert all(torch.equal(c, ref_views) for _, c in rows)
    assert all(torch.equal(c, ref_video) for _, c in cols)


def test_a_missing_reference_is_generated_by_the_other_prior_from_the_last_video_frame():
    rows, cols = [], []
    ref_video = torch.randn(F, *SHAPE)
    sample_image_matrix(gaussian_denoiser(0, 1, rows), gaussian_denoiser(0, 1, cols), V, F, SHAPE,
                        ref_video=ref_video, num_steps=3, rollback_steps=1)
    # the multi-view prior first makes the reference views (one sequence of V) from I00 = the last frame
    assert cols[0][0] == (1, V, *SHAPE) and torch.equal(cols[0][1][0], ref_video[-1])
    assert len(cols) == 3 + 4 and len(rows) == 4
    rows, cols = [], []
    image = torch.randn(*SHAPE)
    sample_image_matrix(gaussian_denoiser(0, 1, rows), gaussian_denoiser(0, 1, cols), V, F, SHAPE, image=image,
                        num_steps=3, rollback_steps=0)
    assert rows[0][0] == (1, F, *SHAPE) and torch.equal(rows[0][1][0], image)
    assert cols[0][0] == (1, V, *SHAPE) and torch.equal(cols[0][1][0], image)
    # then rows are conditioned on the generated reference views, which start from the image's sampling
    assert not torch.equal(rows[-1][1][0], image)


def test_same_seed_same_matrix():
    assert torch.equal(sample(seed=3), sample(seed=3))
    assert not torch.equal(sample(seed=3), sample(seed=4))


@pytest.mark.parametrize("kw,msg", [
    ({"s": 1.5}, "s must lie"), ({"s": float("nan")}, "s must lie"), ({"s": [0.5, 0.5]}, "one per step"),
    ({"rollback": 30}, "rollback_steps"), ({"rollback": -1}, "rollback_steps"), ({"steps": 0}, "num_steps"),
    ({"chunk": 0}, "chunk"), ({"sigma_min": 800.0}, "sigma_min"),
    ({"ref_views": torch.zeros(3, *SHAPE)}, "ref_views must have shape"),
    ({"ref_video": torch.full((F, *SHAPE), float("nan"))}, "NaN"),
])
def test_bad_arguments_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        sample(**kw)
