import math

import numpy as np
import torch

from splat4d.cameras import Cameras


def test_known_point_projects_to_known_pixel():
    # camera at the origin looking down +z: (x, y, z) -> (fx x / z + cx, fy y / z + cy)
    cam = Cameras.from_intrinsics(torch.eye(4)[None], 100.0, 120.0, 32.0, 24.0, 64, 48)
    uv, z = cam.project(torch.tensor([[0.5, -0.25, 2.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([100 * 0.25 + 32, 120 * -0.125 + 24]))
    assert z[0, 0] == 2.0


def test_look_at_orientation_opencv():
    # camera on -y looking at the origin with z up: world +x is image right, world +z is image up
    cam = Cameras.look_at([0.0, -4.0, 0.0], [0.0, 0.0, 0.0], up=(0, 0, 1), width=100, height=80)
    uv, z = cam.project(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([50.0, 40.0]), atol=1e-5)
    assert uv[0, 1, 0] > 50 and abs(uv[0, 1, 1] - 40) < 1e-4  # right
    assert uv[0, 2, 1] < 40 and abs(uv[0, 2, 0] - 50) < 1e-4  # up is smaller y
    assert torch.allclose(z[0, 0], torch.tensor(4.0))
    assert torch.allclose(cam.centers[0], torch.tensor([0.0, -4.0, 0.0]), atol=1e-6)


def test_project_unproject_round_trip():
    cams = Cameras.orbit(5, radius=3.0, elevation_deg=25.0, width=64, height=48)
    pts = torch.randn(20, 3) * 0.5
    uv, z = cams.project(pts)
    back = cams.unproject(uv, z)
    assert torch.allclose(back, pts.expand(5, -1, -1), atol=1e-5)


def test_opengl_round_trip_and_axes():
    c2w_gl = torch.tensor(
        [[0.0, 0.34818652960362717, -0.9374252720097654, -3.5], [-1.0, 0.0, 0.0, 0.0],
         [0.0, 0.9374252720097654, 0.34818652960362717, 1.8], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
    )
    cam = Cameras.from_opengl_c2w(c2w_gl, 800.0, 800.0, 400.0, 400.0, 800, 800)
    assert torch.allclose(cam.to_opengl_c2w()[0], c2w_gl, atol=1e-6)
    # OpenGL looks down -z: the point 1 unit along -z_gl from the centre lands on the principal point
    p = c2w_gl[:3, 3] - c2w_gl[:3, 2]
    uv, z = cam.project(p[None].float())
    assert torch.allclose(uv[0, 0], torch.tensor([400.0, 400.0]), atol=1e-3) and abs(z.item() - 1) < 1e-5
    # OpenGL y is up: a point above the centre line has smaller image y
    uv2, _ = cam.project((p + 0.1 * c2w_gl[:3, 1])[None].float())
    assert uv2[0, 0, 1] < 400


def test_llff_poses_bounds():
    # build poses_bounds from a known OpenGL c2w: LLFF columns are (down, right, backwards) = (-y, x, z)
    cams = Cameras.orbit(3, radius=2.0, width=40, height=30)
    gl = cams.to_opengl_c2w().numpy()
    llff = np.concatenate([-gl[:, :3, 1:2], gl[:, :3, 0:1], gl[:, :3, 2:3], gl[:, :3, 3:4]], axis=2)
    hwf = np.broadcast_to(np.array([30.0, 40.0, cams.Ks[0, 0, 0].item()])[None, :, None], (3, 3, 1))
    pb = np.concatenate([np.concatenate([llff, hwf], 2).reshape(3, 15), np.tile([[0.1, 5.0]], (3, 1))], 1)
    back, bounds = Cameras.from_llff(pb)
    assert torch.allclose(back.viewmats, cams.viewmats, atol=1e-5)
    assert torch.allclose(back.Ks, cams.Ks, atol=1e-4)
    assert bounds.shape == (3, 2)


def test_rescale_keeps_pixel_centres():
    cam = Cameras.from_intrinsics(torch.eye(4)[None], 100.0, 100.0, 40.0, 30.0, 80, 60)
    half = cam.rescale(0.5)
    assert (half.width, half.height) == (40, 30)
    pt = torch.tensor([[0.3, 0.2, 2.0]])
    assert torch.allclose(half.project(pt)[0], cam.project(pt)[0] * 0.5)


def test_orbit_and_spiral_look_at_target():
    for cams in (Cameras.orbit(8, 3.0), Cameras.spiral(10, 3.0)):
        uv, z = cams.project(torch.zeros(1, 3))
        assert torch.allclose(uv[:, 0], torch.tensor([128.0, 128.0]).expand(len(cams), 2), atol=1e-3)
        assert torch.allclose(z[:, 0], torch.full((len(cams),), 3.0), atol=1e-4)
    assert math.isclose(Cameras.orbit(4, 3.0, fov_deg=60).fov_x[0].item(), math.radians(60), rel_tol=1e-5)
