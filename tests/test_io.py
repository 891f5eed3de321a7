"""Images, video and PLY: round trips, layouts, atomic writes and the exact 3DGS field layout."""

import numpy as np
import pytest
import torch

from splat4d.errors import DatasetError
from splat4d.io import (
    image_grid,
    load_gaussians_ply,
    load_image,
    load_points_ply,
    read_video,
    save_gaussians_ply,
    save_image,
    save_points_ply,
    side_by_side,
    write_video,
)
from splat4d.io.atomic import atomic_path
from splat4d.io.ply import SH_C0, gaussian_ply_fields


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- images
def test_image_roundtrip_float_uint8_alpha(tmp_path):
    img = torch.rand(13, 17, 3, generator=_gen())
    p = save_image(tmp_path / "a.png", img)
    back = load_image(p)
    assert back.dtype == np.uint8 and back.shape == (13, 17, 3)
    np.testing.assert_array_equal(back, np.round(img.numpy() * 255).astype(np.uint8))
    np.testing.assert_allclose(load_image(p, as_float=True), img.numpy(), atol=0.5 / 255 + 1e-6)

    rgba = (np.random.default_rng(0).random((8, 9, 4)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "b.png", rgba)), rgba)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "g.png", grey[..., None])), grey)
    assert load_image(save_image(tmp_path / "c.jpg", rgba)).shape == (8, 9, 3)  # JPEG drops alpha
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "b.png", "c.jpg", "g.png"]  # no temp files
    with pytest.raises(DatasetError):
        load_image(tmp_path / "none.png")


def test_side_by_side_and_grid():
    a = np.zeros((4, 5, 3), np.float32)
    b = np.ones((3, 2, 3), np.float32)
    s = side_by_side(a, b, gap=1, fill=0.5)
    assert s.shape == (4, 5 + 1 + 5, 3) and s.dtype == np.float32
    assert (s[:, 5] == 0.5).all() and (s[:3, 6:8] == 1).all() and (s[3, 6:8] == 0.5).all()
    g = image_grid([a, b, a, b, a], cols=2)
    assert g.shape == (3 * 4, 2 * 5, 3)
    assert (g[4:7, 5:7] == 1).all() and (g[8:, 5:] == 0).all()
    mixed = side_by_side(torch.ones(2, 2, 3), np.zeros((2, 2, 3), np.uint8))  # uint8 wins
    assert mixed.dtype == np.uint8 and mixed[0, 0, 0] == 255 and mixed[0, 3, 0] == 0


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.bin"]


# ----------------------------------------------------------------------------- video
def test_video_roundtrip_pads_odd_sizes(tmp_path):
    T, H, W = 6, 21, 31
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([xx * 8 + t * 4, yy * 12, np.full_like(xx, 128)], -1) for t in range(T)])
    frames = np.clip(frames, 0, 255).astype(np.uint8)  # smooth gradients survive H.264 well
    path = write_video(tmp_path / "v.mp4", frames, fps=10)
    back = read_video(path)
    assert back.shape == (T, H + 1, W + 1, 3) and back.dtype == np.uint8
    err = np.abs(back[:, :H, :W].astype(int) - frames.astype(int)).mean()
    assert err < 6, err
    assert [f.name for f in tmp_path.iterdir()] == ["v.mp4"]

    floats = [torch.full((8, 10, 3), 0.5) for _ in range(3)]  # list of float frames
    back = read_video(write_video(tmp_path / "f.mp4", floats))
    assert back.shape == (3, 8, 10, 3) and abs(back.mean() - 128) < 3
    with pytest.raises(ValueError):
        write_video(tmp_path / "e.mp4", [])
    with pytest.raises(DatasetError):
        read_video(tmp_path / "missing.mp4")


# ----------------------------------------------------------------------------- PLY
def _gaussians(N=50, K=16, seed=0):
    g = _gen(seed)
    return dict(
        means=torch.randn(N, 3, generator=g),
        quats=torch.randn(N, 4, generator=g),
        scales=torch.rand(N, 3, generator=g) * 0.1 + 1e-3,
        opacities=torch.rand(N, generator=g) * 0.98 + 0.01,
        sh=torch.randn(N, K, 3, generator=g) * 0.3,
    )


@pytest.mark.parametrize("K", [1, 4, 16])
def test_gaussian_ply_roundtrip(tmp_path, K):
    g = _gaussians(K=K)
    out = load_gaussians_ply(save_gaussians_ply(tmp_path / "g.ply", **g))
    for k in ("means", "quats", "sh"):
        torch.testing.assert_close(out[k], g[k], rtol=0, atol=1e-6)
    torch.testing.assert_close(out["scales"], g["scales"], rtol=1e-5, atol=0)
    torch.testing.assert_close(out["opacities"], g["opacities"], rtol=0, atol=1e-6)
    assert out["sh_degree"] == {1: 0, 4: 1, 16: 3}[K]


def test_gaussian_ply_matches_3dgs_layout(tmp_path):
    from plyfile import PlyData

    g = _gaussians(N=7, K=16)
    path = save_gaussians_ply(tmp_path / "g.ply", **g)
    raw = PlyData.read(str(path))["vertex"]
    names = [p.name for p in raw.properties]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected == gaussian_ply_fields(16)
    assert all(p.val_dtype in ("float", "float32", "f4") for p in raw.properties)
    assert open(path, "rb").read(200).find(b"format binary_little_endian 1.0") >= 0
    d = raw.data
    i = 3
    # raw values: logit opacity, log scale, wxyz quaternion, zero normals
    assert d["opacity"][i] == pytest.approx(float(torch.logit(g["opacities"][i].double())), abs=1e-5)
    assert d["scale_1"][i] == pytest.approx(float(g["scales"][i, 1].log()), abs=1e-5)
    assert d["rot_0"][i] == pytest.approx(float(g["quats"][i, 0]), abs=1e-6)
    assert d["nx"][i] == 0.0
    # channel-major f_rest: f_rest_{c * 15 + j} is coefficient j + 1 of channel c
    for c in range(3):
        for j in (0, 7, 14):
            assert d[f"f_rest_{c * 15 + j}"][i] == pytest.approx(float(g["sh"][i, j + 1, c]), abs=1e-6)
    assert d["f_dc_2"][i] == pytest.approx(float(g["sh"][i, 0, 2]), abs=1e-6)


def test_gaussian_ply_edge_cases(tmp_path):
    g = _gaussians(N=3, K=1)
    g["opacities"] = torch.tensor([0.0, 1.0, 0.5])  # clamped, stays finite
    g["sh"] = g["sh"][:, 0]  # DC-only [N, 3] is accepted
    out = load_gaussians_ply(save_gaussians_ply(tmp_path / "g.ply", **g))
    assert torch.isfinite(out["opacities"]).all() and out["sh"].shape == (3, 1, 3)
    torch.testing.assert_close(out["opacities"], torch.tensor([0.0, 1.0, 0.5]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        save_gaussians_ply(tmp_path / "bad.ply", **{**g, "scales": torch.log(g["scales"])})
    save_points_ply(tmp_path / "pts.ply", torch.zeros(4, 3))
    with pytest.raises(DatasetError):
        load_gaussians_ply(tmp_path / "pts.ply")


def test_points_ply_roundtrip(tmp_path):
    g = _gen(1)
    xyz = torch.randn(100, 3, generator=g)
    rgb = torch.rand(100, 3, generator=g)
    p, c = load_points_ply(save_points_ply(tmp_path / "p.ply", xyz, rgb))
    torch.testing.assert_close(p, xyz)
    torch.testing.assert_close(c, torch.round(rgb * 255) / 255, rtol=0, atol=1e-6)
    p, c = load_points_ply(save_points_ply(tmp_path / "q.ply", xyz.numpy()))
    assert c is None and torch.equal(p, xyz)
    # a 3DGS file read as points takes its colour from the SH DC term
    gs = _gaussians(N=5, K=4)
    p, c = load_points_ply(save_gaussians_ply(tmp_path / "g.ply", **gs))
    torch.testing.assert_close(p, gs["means"])
    torch.testing.assert_close(c, (SH_C0 * gs["sh"][:, 0] + 0.5).clamp(0, 1), rtol=0, atol=1e-6)
