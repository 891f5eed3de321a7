"""The baked 4K4D renderer's fused colour kernel against its torch twin (ibr.blend + ibr.sh_residual)."""

import pytest
import torch

from splat4d.methods.fourk4d import ibr
from splat4d.methods.fourk4d.shade_cpu import shade_cpu

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


@pytest.mark.parametrize("bases", [1, 4, 9, 16])
def test_fused_colours_match_the_torch_blend_and_sh_residual(bases):
    g = torch.Generator().manual_seed(bases)
    N, n = 300, 4
    colors = torch.rand(N, n, 3, generator=g)
    logits = torch.randn(N, n, generator=g) * 8  # large enough that a naive exp would overflow in fp16
    valid = torch.rand(N, n, generator=g) > 0.3
    valid[:20] = False  # points no chosen view sees: the SH residual alone
    sh = torch.randn(N, bases, 3, generator=g)
    means = torch.randn(N, 3, generator=g)
    eye = torch.tensor([0.3, -2.0, 1.5])
    blended = ibr.blend(colors, logits, valid, torch.arange(n))
    expected = ibr.point_colors(blended, ibr.sh_residual(sh, means, eye))
    got = shade_cpu(colors, logits, valid, sh, means, eye)
    assert got.dtype == torch.float32 and got.shape == (N, 3)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
    assert (expected[:20] == ibr.point_colors(torch.zeros(20, 3), ibr.sh_residual(sh[:20], means[:20], eye))).all()


def test_fused_colours_read_fp16_storage_and_pick_the_chosen_views_in_place():
    g = torch.Generator().manual_seed(7)
    N, V = 200, 6
    colors = torch.rand(N, V, 3, generator=g).half()
    logits = torch.randn(N, V, generator=g) * 4
    valid = torch.rand(N, V, generator=g) > 0.3
    sh = (torch.randn(N, 16, 3, generator=g) * 0.5).half()
    means, eye = torch.randn(N, 3, generator=g), torch.tensor([1.0, 2.0, 0.5])
    views = torch.tensor([4, 1, 3])
    blended = ibr.blend(colors[:, views].float(), logits[:, views], valid[:, views], torch.arange(3))
    expected = ibr.point_colors(blended, ibr.sh_residual(sh.float(), means, eye))
    got = shade_cpu(colors, logits, valid, sh, means, eye, views)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
    # the fp16 table widens every finite bit pattern exactly (subnormals and the largest values included)
    from splat4d.methods.fourk4d.shade_cpu import _HALF

    bits = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    finite = torch.isfinite(bits)
    assert torch.equal(torch.from_numpy(_HALF)[finite], bits[finite])


def test_fused_colours_refuse_an_sh_size_of_no_degree():
    with pytest.raises(ValueError, match="1, 4, 9 or 16"):
        shade_cpu(torch.rand(2, 1, 3), torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.zeros(2, 5, 3),
                  torch.zeros(2, 3), torch.ones(3))


def test_fused_colours_of_the_needed_points_only():
    g = torch.Generator().manual_seed(3)
    N, V = 100, 4
    colors, logits = torch.rand(N, V, 3, generator=g), torch.randn(N, V, generator=g)
    valid, sh = torch.rand(N, V, generator=g) > 0.2, torch.randn(N, 9, 3, generator=g)
    means, eye = torch.randn(N, 3, generator=g), torch.tensor([0.0, -3.0, 1.0])
    need = torch.rand(N, generator=g) > 0.5
    full = shade_cpu(colors, logits, valid, sh, means, eye)
    part = shade_cpu(colors, logits, valid, sh, means, eye, need=need)
    assert torch.equal(part[need], full[need]) and (part[~need] == 0).all()


def test_fused_colours_blend_from_the_logits_where_the_precomputed_weights_underflow():
    g = torch.Generator().manual_seed(5)
    N, V = 64, 4
    colors = torch.rand(N, V, 3, generator=g)
    logits = torch.randn(N, V, generator=g)
    logits[:32, 3] += 150.0  # a view not chosen dominates: exp(chosen - largest) is 0 in float32
    valid = torch.ones(N, V, dtype=torch.bool)
    sh = torch.randn(N, 4, 3, generator=g) * 0.1
    means, eye = torch.randn(N, 3, generator=g), torch.tensor([0.0, -3.0, 1.0])
    views = torch.tensor([0, 1])
    from splat4d.methods.fourk4d.shade_cpu import blend_weights

    weights = blend_weights(logits, valid)
    assert (weights[:32, :3] == 0).all() and (weights[32:] > 0).all()
    blended = ibr.blend(colors[:, views], logits[:, views], valid[:, views], torch.arange(2))
    expected = ibr.point_colors(blended, ibr.sh_residual(sh, means, eye))
    torch.testing.assert_close(shade_cpu(colors, logits, valid, sh, means, eye, views, weights=weights), expected,
                               atol=2e-6, rtol=0)
