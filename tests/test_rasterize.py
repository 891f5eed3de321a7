"""The CPU rasterizer against the dense torch oracle and gsplat's reference projection."""

import math

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.fields.sh import eval_sh
from splat4d.render import rasterize
from splat4d.render.projection import covariances, project_gaussians


def hard_scene(n=240, dtype=torch.float64, seed=0, sh_degree=None):
    """Random Gaussians plus the awkward ones: behind the camera, off-screen, tiny, huge, needle-thin."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.6
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 - 3.0)
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.98 + 0.01
    k = n // 12
    means[:k] = torch.tensor([0.0, -6.0, 0.0], dtype=dtype) + torch.randn(k, 3, generator=g, dtype=dtype) * 0.3  # behind
    means[k : 2 * k, 0] += 8.0  # off-screen
    scales[2 * k : 3 * k] = 1e-4  # tiny: sub-pixel, eps2d dominates
    scales[3 * k : 4 * k] = 0.8  # huge: cover the image
    scales[4 * k : 5 * k, 0] = 0.4  # very anisotropic needles
    scales[4 * k : 5 * k, 1:] = 0.002
    opac[5 * k : 6 * k] = 0.999  # saturating: exercises alpha <= 0.999 and the T <= 1e-4 stop
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=dtype)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.3
    cams = Cameras.look_at(
        [[0.0, -3.0, 0.2], [2.5, -1.5, 1.0], [0.1, -2.0, -0.3]], [0.0, 0.0, 0.0], width=37, height=29, fov_deg=60
    ).to(dtype=dtype)
    return [means, quats, scales, opac, colors], cams


def render_and_grads(params, cams, backend, sh_degree=None, bg=None, seed=1):
    ps = [p.clone().requires_grad_() for p in params]
    bgp = None if bg is None else bg.clone().requires_grad_()
    out = rasterize(*ps, cams, background=bgp, sh_degree=sh_degree, backend=backend, return_weights=True)
    g = torch.Generator().manual_seed(seed)
    loss = (out.rgb * torch.rand(out.rgb.shape, generator=g, dtype=out.rgb.dtype)).sum()
    loss = loss + (out.alpha * torch.rand(out.alpha.shape, generator=g, dtype=out.rgb.dtype)).sum()
    loss = loss + 0.05 * (out.depth * torch.rand(out.depth.shape, generator=g, dtype=out.rgb.dtype)).sum()
    loss.backward()
    grads = [p.grad for p in ps] + ([bgp.grad] if bg is not None else [])
    return out, grads


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_forward_matches_dense_float32(seed):
    params, cams = hard_scene(dtype=torch.float32, seed=seed)
    a = rasterize(*params, cams, background=torch.tensor([0.1, 0.5, 0.9]), backend="cpu", return_weights=True)
    b = rasterize(*params, cams, background=torch.tensor([0.1, 0.5, 0.9]), backend="torch", return_weights=True)
    assert a.rgb.dtype == torch.float32
    assert (a.rgb - b.rgb).abs().max() <= 1e-4
    assert (a.alpha - b.alpha).abs().max() <= 1e-4
    assert (a.depth - b.depth).abs().max() <= 1e-4 * b.depth.abs().max()
    assert torch.equal(a.meta["radii"], b.meta["radii"])
    assert a.alpha.max() > 0.9  # the scene is not empty


@pytest.mark.parametrize("seed", [0, 3])
def test_cpu_gradients_match_dense(seed):
    params, cams = hard_scene(seed=seed)
    bg = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    _, ga = render_and_grads(params, cams, "cpu", bg=bg)
    _, gb = render_and_grads(params, cams, "torch", bg=bg)
    for name, x, y in zip(["means", "quats", "scales", "opacities", "colors", "background"], ga, gb):
        assert y.abs().max() > 0, name
        assert rel_err(x, y) <= 1e-3, name


def test_sh_degree3_forward_and_gradients():
    params, cams = hard_scene(n=120, sh_degree=3)
    a, ga = render_and_grads(params, cams, "cpu", sh_degree=3)
    b, gb = render_and_grads(params, cams, "torch", sh_degree=3)
    assert (a.rgb - b.rgb).abs().max() <= 1e-6
    assert rel_err(ga[4], gb[4]) <= 1e-3  # SH coefficients
    assert rel_err(ga[0], gb[0]) <= 1e-3


def test_weights_sum_to_alpha_and_saturation_stop():
    params, cams = hard_scene(dtype=torch.float64)
    out = rasterize(*params, cams, backend="cpu", return_weights=True)
    # sum over Gaussians of their blend weights = sum over pixels of accumulated alpha
    assert torch.allclose(out.meta["weights"].sum(1), out.alpha.sum(dim=(1, 2, 3)), rtol=1e-9)
    # a stack of opaque Gaussians in front of the camera: transmittance stops above 1e-4 (exclusive rule)
    n = 10
    means = torch.stack([torch.zeros(n), torch.linspace(-1, 1, n), torch.zeros(n)], -1).double()
    one = torch.ones(n, dtype=torch.float64)
    out = rasterize(means, torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4), torch.full((n, 3), 2.0).double(),
                    0.99 * one, torch.rand(n, 3).double(), cams[0], backend="cpu")
    T = 1 - out.alpha
    assert T.min() > 1e-4 and T.min() < 1e-3


def test_single_gaussian_known_pixel_value():
    # isotropic Gaussian of std s at depth z on the optical axis: cov2d = (f s / z)^2 + eps2d
    f, z, s, o = 100.0, 4.0, 0.1, 0.8
    cam = Cameras.from_intrinsics(torch.eye(4)[None].double(), f, f, 32.0, 32.0, 64, 64)
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    out = rasterize(means, torch.tensor([[1.0, 0, 0, 0]]).double(), torch.full((1, 3), s, dtype=torch.float64),
                    torch.tensor([o], dtype=torch.float64), torch.tensor([[1.0, 0.5, 0.25]]).double(), cam, backend="cpu")
    var = (f * s / z) ** 2 + 0.3
    # pixel (32, 32) has centre (32.5, 32.5): offset 0.5 in x and y from the mean at (32, 32)
    expected_alpha = o * math.exp(-0.5 * (0.25 + 0.25) / var)
    assert out.alpha[0, 32, 32, 0].item() == pytest.approx(expected_alpha, rel=1e-9)
    assert out.rgb[0, 32, 32, 1].item() == pytest.approx(0.5 * expected_alpha, rel=1e-9)
    assert out.depth[0, 32, 32, 0].item() == pytest.approx(z, rel=1e-9)
    assert out.meta["radii"][0, 0].tolist() == [math.ceil(3.33 * math.sqrt(var))] * 2


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_degenerate_gaussians_are_culled(backend):
    """gsplat's CUDA projection culls a Gaussian whose blurred 2D covariance has det <= 0: a zero-width
    line seen across (eps2d = 0) and a NaN one are not drawn; with the default blur the line is."""
    cam = Cameras.from_intrinsics(torch.eye(4)[None].double(), 50.0, 50.0, 16.0, 16.0, 32, 32)
    means = torch.tensor([[0.0, 0.0, 3.0], [0.2, 0.1, 3.0], [-0.2, 0.0, 3.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).repeat(3, 1)
    scales = torch.tensor([[0.3, 0.0, 0.0], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]], dtype=torch.float64)
    scales[2, 0] = float("nan")
    opac, colors = torch.full((3,), 0.9, dtype=torch.float64), torch.ones(3, 3, dtype=torch.float64)
    out = rasterize(means, quats, scales, opac, colors, cam, eps2d=0.0, backend=backend)
    assert out.meta["visible"][0].tolist() == [False, True, False]
    assert (out.meta["radii"][0, [0, 2]] == 0).all()
    assert torch.isfinite(out.rgb).all()
    blurred = rasterize(means[:1], quats[:1], scales[:1], opac[:1], colors[:1], cam, backend=backend)
    assert blurred.meta["visible"][0].tolist() == [True] and blurred.alpha.max() > 0.1


def test_gradcheck_cpu_backend():
    params, cams = hard_scene(n=24, seed=5)
    cams = Cameras.from_intrinsics(cams.viewmats[:1], 20.0, 20.0, 8.0, 6.0, 16, 12).to(dtype=torch.float64)
    params[2] = params[2] * 4  # larger Gaussians so every parameter reaches some pixel

    def f(means, scales, opac, colors):
        out = rasterize(means, params[1], scales, opac, colors, cams, backend="cpu")
        return out.rgb, out.alpha

    inputs = tuple(params[i].clone().requires_grad_() for i in (0, 2, 3, 4))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_deterministic_and_means2d_grad():
    params, cams = hard_scene(dtype=torch.float32)
    o1, g1 = render_and_grads(params, cams, "cpu")
    o2, g2 = render_and_grads(params, cams, "cpu")
    assert torch.equal(o1.rgb, o2.rgb)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    m2d = o1.meta["means2d"]
    assert m2d.grad is not None and m2d.grad.shape == m2d.shape
    vis = o1.meta["visible"]
    assert (m2d.grad[~vis] == 0).all() and m2d.grad[vis].abs().sum() > 0


def test_projection_matches_gsplat_reference():
    ref = pytest.importorskip("gsplat.cuda._torch_impl")
    params, cams = hard_scene(dtype=torch.float64)
    means, quats, scales = params[:3]
    covars = covariances(quats, scales)
    mine = project_gaussians(means, covars, cams.viewmats, cams.Ks, cams.width, cams.height)
    theirs_covars, _ = ref._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = ref._fully_fused_projection(
        means, theirs_covars, cams.viewmats, cams.Ks, cams.width, cams.height
    )
    assert torch.allclose(covars, theirs_covars, atol=1e-14)
    if radii.dim() == 2:
        radii = radii[..., None].expand(-1, -1, 2)
    assert torch.equal(mine.radii, radii.int())
    vis = (radii > 0).all(-1)
    assert vis.sum() > 100 and (~vis).sum() > 10
    assert torch.allclose(mine.means2d[vis], means2d[vis], atol=1e-10)
    assert torch.allclose(mine.conics[vis], conics[vis], rtol=1e-10, atol=1e-12)
    assert torch.allclose(mine.depths, depths)


def test_sh_matches_gsplat_reference():
    ref = pytest.importorskip("gsplat.cuda._torch_impl")
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(50, 16, 3, generator=g, dtype=torch.float64)
    dirs = torch.randn(50, 3, generator=g, dtype=torch.float64)
    for deg in range(4):
        assert torch.allclose(eval_sh(deg, coeffs, dirs), ref._spherical_harmonics(deg, dirs, coeffs), atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backend_matches_cpu():
    pytest.importorskip("gsplat")
    params, cams = hard_scene(dtype=torch.float32, sh_degree=3)
    a, ga = render_and_grads(params, cams, "cpu", sh_degree=3)
    pc = [p.cuda() for p in params]
    b, gb = render_and_grads(pc, cams.to("cuda"), "cuda", sh_degree=3)
    assert (a.rgb - b.rgb.cpu()).abs().max() <= 2e-3
    assert (a.alpha - b.alpha.cpu()).abs().max() <= 2e-3
    assert torch.allclose(a.meta["weights"], b.meta["weights"].cpu(), rtol=1e-2, atol=1e-2)
    for x, y in zip(ga, gb):
        assert rel_err(x, y.cpu()) <= 2e-2
