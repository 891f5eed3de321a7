"""The fused numba projection + SH kernel (render/projection_cpu.py) against its torch twin
(projection.project_gaussians(covariances(...)) and clamp_min(eval_sh(...) + 0.5, 0)): forward values,
radii exactly, gradients of every input under random upstream gradients, gradcheck in float64, and a
whole rasterize(backend="cpu") with fused_cpu on and off."""

import pytest
import torch

from splat4d.cameras import Cameras
from splat4d.fields.sh import eval_sh
from splat4d.render import rasterize
from splat4d.render.projection import covariances, project_gaussians
from splat4d.render.projection_cpu import project_sh_cpu

W, H = 41, 31
OUTPUTS = ["means2d", "depths", "conics", "compensations", "colors"]
INPUTS = ["means", "quats", "scales", "sh"]


def cameras(dtype) -> Cameras:
    """An identity camera (camera space = world space: depths and x/z set directly) with an off-centre
    principal point, plus two look-at cameras."""
    eye = Cameras.from_intrinsics(torch.eye(4)[None], 30.0, 34.0, 17.0, 18.0, W, H)
    rig = Cameras.look_at([[0.5, 0.3, -3.0], [3.0, 0.2, 1.5]], [0.0, 0.0, 2.0], width=W, height=H, fov_deg=55)
    return Cameras.cat([eye, rig]).to(dtype=dtype)


def scene(n=400, dtype=torch.float64, seed=0, K=18):
    """Random Gaussians in front of the identity camera plus the awkward cases: behind and at the near
    plane, off-screen, beyond the 1.3x field-of-view clamp (small, and large enough to stay visible),
    flat (one scale ~0), tiny (eps2d dominates) and huge."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g, dtype=dtype) * 3 + 1.0
    xy = (torch.rand(n, 2, generator=g, dtype=dtype) - 0.5) * 1.2 * z[:, None]
    means = torch.cat([xy, z[:, None]], dim=1)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 - 3.0)
    sh = torch.randn(n, K, 3, generator=g, dtype=dtype) * 0.3
    k = n // 10
    means[:k, 2] = -torch.rand(k, generator=g, dtype=dtype)  # behind the identity camera
    means[k, 2] = 0.01  # exactly at the near plane (culled: depth must exceed it)
    means[k : 2 * k, 0] = means[k : 2 * k, 2] * 4.0  # x/z = 4: beyond the clamp, off-screen
    means[2 * k : 3 * k, 0] = means[2 * k : 3 * k, 2] * -1.1  # beyond the clamp on the left ...
    scales[2 * k : 3 * k] = 0.6  # ... but large enough to reach into the image
    scales[3 * k : 4 * k, 0] = 1e-9  # flat
    scales[4 * k : 5 * k] = 1e-5  # tiny
    scales[5 * k : 6 * k] = 2.0  # huge
    return [means, quats, scales, sh], cameras(dtype)


def fused(params, cams, degree, eps2d=0.3):
    means, quats, scales, sh = params
    radii, m2d, dep, con, comp, col = project_sh_cpu(
        means, quats, scales, cams.viewmats, cams.Ks, W, H, eps2d, 0.01, 1e10, sh, degree
    )
    return radii, [m2d, dep, con, comp, col]


def twin(params, cams, degree, eps2d=0.3):
    means, quats, scales, sh = params
    p = project_gaussians(means, covariances(quats, scales), cams.viewmats, cams.Ks, W, H, eps2d, 0.01, 1e10)
    dirs = means[None] - cams.centers[:, None]
    col = torch.clamp_min(eval_sh(degree, sh[None].expand(len(cams), -1, -1, -1), dirs) + 0.5, 0.0)
    return p.radii, [p.means2d, p.depths, p.conics, p.compensations, col]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def test_scene_has_every_case():
    params, cams = scene()
    radii, _ = twin(params, cams, 3)
    vis = (radii[0] > 0).all(-1)
    k = 40
    assert not vis[:k].any() and not vis[k : 2 * k].any()  # behind / off-screen: culled
    assert vis[2 * k : 3 * k].sum() > 10  # clamped by the FOV limit yet visible
    assert vis[3 * k :].sum() > 200
    ux = params[0][2 * k : 3 * k, 0] / params[0][2 * k : 3 * k, 2]
    assert (ux < -(17.0 / 30.0 + 0.3 * 0.5 * W / 30.0)).all()  # really beyond the clamp


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 5e-4)])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_forward_matches_twin(dtype, tol, degree):
    params, cams = scene(dtype=dtype, seed=degree)
    ra, a = fused(params, cams, degree)
    rb, b = twin(params, cams, degree)
    assert torch.equal(ra, rb)
    assert ra.dtype == torch.int32 and ra.shape == (3, 400, 2)
    for name, x, y in zip(OUTPUTS, a, b):
        assert x.dtype == dtype and x.shape == y.shape, name
        assert rel_err(x, y) <= tol, name


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_gradients_match_twin(dtype, tol, degree):
    params, cams = scene(dtype=dtype, seed=10 + degree)
    pa = [p.clone().requires_grad_() for p in params]
    pb = [p.clone().requires_grad_() for p in params]
    _, a = fused(pa, cams, degree)
    _, b = twin(pb, cams, degree)
    g = torch.Generator().manual_seed(degree)
    ups = [torch.randn(x.shape, generator=g, dtype=dtype) for x in b]
    sum((x * u).sum() for x, u in zip(a, ups)).backward()
    sum((x * u).sum() for x, u in zip(b, ups)).backward()
    for name, x, y in zip(INPUTS, pa, pb):
        assert y.grad.abs().max() > 0, name
        assert rel_err(x.grad, y.grad) <= tol, name
    nb = (degree + 1) ** 2  # coefficients past the degree get exactly zero
    assert (pa[3].grad[:, nb:] == 0).all()


@pytest.mark.parametrize("only", [None, "means2d", "conics", "compensations", "colors"])
def test_each_output_alone(only):
    """Outputs that get no gradient arrive as None in the backward; each path alone must match."""
    params, cams = scene(n=120, seed=5)
    pa = [p.clone().requires_grad_() for p in params]
    pb = [p.clone().requires_grad_() for p in params]
    _, a = fused(pa, cams, 2)
    _, b = twin(pb, cams, 2)
    pick = OUTPUTS if only is None else [only]
    sum((a[OUTPUTS.index(n)] ** 2).sum() for n in pick).backward()
    sum((b[OUTPUTS.index(n)] ** 2).sum() for n in pick).backward()
    for name, x, y in zip(INPUTS, pa, pb):
        if y.grad is None or not y.grad.abs().max() > 0:
            assert x.grad is None or (x.grad == 0).all(), name
        else:
            assert rel_err(x.grad, y.grad) <= 1e-9, name


def test_gradcheck_float64():
    """Away from the clamps' kinks (no Gaussian at a limit), gradients equal finite differences."""
    g = torch.Generator().manual_seed(3)
    n = 12
    z = torch.rand(n, generator=g, dtype=torch.float64) + 1.5
    means = torch.cat([(torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * z[:, None], z[:, None]], 1)
    means[0, 0] = -1.2 * means[0, 2]  # clamped in x: only the clamp's flat side
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.2 + 0.05
    sh = torch.randn(n, 16, 3, generator=g, dtype=torch.float64) * 0.3
    sh[:, 0] += 1.0  # colours well above the clamp at 0
    cams = cameras(torch.float64)

    def f(m, q, s, c):
        _, outs = fused([m, q, s, c], cams, 3)
        return tuple(outs)

    inputs = tuple(x.requires_grad_() for x in (means, quats, scales, sh))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_safe_depth_behind_the_near_plane():
    """Behind the near plane the projection divides by the constant 1: means2d and conics pass no
    gradient to the camera-space depth, only `depths` does (identity camera: depth is z)."""
    params, cams = scene(n=100, seed=2)
    cams = Cameras(cams.viewmats[:1], cams.Ks[:1], W, H)
    for fn in (fused, twin):
        pa = [p.clone().requires_grad_() for p in params]
        _, a = fn(pa, cams, 1)
        (a[0].sum() + a[2].sum()).backward()
        behind = params[0][:, 2] <= 0.01
        assert behind.sum() >= 10
        assert (pa[0].grad[behind, 2] == 0).all()
        assert (pa[0].grad[~behind, 2] != 0).all()


def test_too_few_coefficients_is_refused():
    params, cams = scene(n=20, K=4)
    with pytest.raises(ValueError, match="needs 9 SH coefficients"):
        fused(params, cams, 2)


# ----------------------------------------------------------------------------- rasterize, fused vs unfused
@pytest.mark.parametrize("antialiased", [False, True])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_rasterize_fused_matches_unfused(antialiased, dtype, tol):
    params, cams = scene(n=300, dtype=dtype, seed=7, K=16)
    means, quats, scales, sh = params
    opac = torch.rand(300, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.9 + 0.05
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=dtype)
    res = []
    for flag in (True, False):
        ps = [p.clone().requires_grad_() for p in (means, quats, scales, opac, sh)]
        out = rasterize(*ps, cams, background=bg, sh_degree=3, backend="cpu", antialiased=antialiased,
                        fused_cpu=flag)
        g = torch.Generator().manual_seed(4)
        loss = (out.rgb * torch.rand(out.rgb.shape, generator=g, dtype=dtype)).sum() + 0.1 * out.depth.sum()
        loss = loss + (out.alpha * torch.rand(out.alpha.shape, generator=g, dtype=dtype)).sum()
        loss.backward()
        res.append((out, [p.grad for p in ps] + [out.meta["means2d"].grad]))
    (a, ga), (b, gb) = res
    assert b.alpha.max() > 0.5
    for name in ("rgb", "alpha", "depth"):
        assert (getattr(a, name) - getattr(b, name)).abs().max() <= tol * 10, name
    assert torch.equal(a.meta["radii"], b.meta["radii"])
    for name, x, y in zip(["means", "quats", "scales", "opacities", "sh", "means2d.grad"], ga, gb):
        assert y is not None and y.abs().max() > 0, name
        assert rel_err(x, y) <= tol * 10, name


def test_rasterize_fused_plain_colours():
    """Without sh_degree the fused kernel only projects; features are the given colours."""
    params, cams = scene(n=200, seed=8)
    means, quats, scales, _ = params
    cols = torch.rand(200, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    opac = torch.full((200,), 0.6, dtype=torch.float64)
    a = rasterize(means, quats, scales, opac, cols, cams, backend="cpu", fused_cpu=True)
    b = rasterize(means, quats, scales, opac, cols, cams, backend="cpu", fused_cpu=False)
    assert a.rgb.shape[-1] == 4
    assert (a.rgb - b.rgb).abs().max() <= 1e-9
