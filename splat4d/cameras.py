"""Batched pinhole cameras in the OpenCV convention (x right, y down, z forward).

`viewmats` are world-to-camera 4x4 matrices and `Ks` 3x3 intrinsics, exactly what gsplat's
`rasterization()` takes, so every renderer consumes a `Cameras` without conversion. Pixel centres
sit at +0.5: pixel (0, 0) covers [0, 1) x [0, 1) and its centre is (0.5, 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# OpenGL/Blender camera axes (x right, y up, looking down -z) -> OpenCV (x right, y down, z forward).
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


@dataclass
class Cameras:
    """C pinhole cameras sharing one image size.

    Attributes:
        viewmats: world-to-camera transforms. [C, 4, 4]
        Ks: intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]. [C, 3, 3]
        width: image width in pixels.
        height: image height in pixels.
    """

    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.viewmats.dim() == 2:
            self.viewmats = self.viewmats[None]
        if self.Ks.dim() == 2:
            self.Ks = self.Ks[None]
        if self.viewmats.shape[1:] != (4, 4) or self.Ks.shape[1:] != (3, 3):
            raise ValueError(f"bad camera shapes {tuple(self.viewmats.shape)}, {tuple(self.Ks.shape)}")
        if self.viewmats.shape[0] != self.Ks.shape[0]:
            raise ValueError("viewmats and Ks disagree on the number of cameras")
        self.width, self.height = int(self.width), int(self.height)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return Cameras(self.viewmats[idx], self.Ks[idx], self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.viewmats.device

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(self.viewmats.to(device, dtype), self.Ks.to(device, dtype), self.width, self.height)

    @staticmethod
    def cat(cams: list["Cameras"]) -> "Cameras":
        if len({(c.width, c.height) for c in cams}) != 1:
            raise ValueError("cannot batch cameras of different image sizes")
        return Cameras(
            torch.cat([c.viewmats for c in cams]), torch.cat([c.Ks for c in cams]), cams[0].width, cams[0].height
        )

    @property
    def camtoworlds(self) -> Tensor:  # [C, 4, 4]
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> Tensor:  # [C, 3]
        R, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -(R.transpose(1, 2) @ t[..., None])[..., 0]

    @property
    def fov_x(self) -> Tensor:  # [C] radians
        return 2 * torch.atan(0.5 * self.width / self.Ks[:, 0, 0])

    def rescale(self, factor: float) -> "Cameras":
        """Cameras for images resized by `factor` (pixel edges scale, so centres map c -> c * factor)."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        Ks = self.Ks.clone()
        Ks[:, 0, :] *= sx
        Ks[:, 1, :] *= sy
        return Cameras(self.viewmats.clone(), Ks, w, h)

    def check_finite(self) -> bool:
        return bool(torch.isfinite(self.viewmats).all() and torch.isfinite(self.Ks).all())

    # ------------------------------------------------------------ projection
    def world_to_camera(self, points: Tensor) -> Tensor:
        """points [N, 3] (or [C, N, 3]) -> camera-space points [C, N, 3]."""
        R, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        if points.dim() == 2:
            return torch.einsum("cij,nj->cni", R, points) + t[:, None]
        return torch.einsum("cij,cnj->cni", R, points) + t[:, None]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """World points [N, 3] -> (pixels [C, N, 2] in pixel-edge coordinates, depths [C, N])."""
        pc = self.world_to_camera(points)
        z = pc[..., 2]
        uv = torch.einsum("cij,cnj->cni", self.Ks[:, :2, :3], pc) / z[..., None]
        return uv, z

    def unproject(self, pixels: Tensor, depths: Tensor) -> Tensor:
        """Pixels [C, N, 2] with camera-space depths z [C, N] -> world points [C, N, 3]."""
        fx, fy = self.Ks[:, 0, 0, None], self.Ks[:, 1, 1, None]
        cx, cy = self.Ks[:, 0, 2, None], self.Ks[:, 1, 2, None]
        x = (pixels[..., 0] - cx) / fx * depths
        y = (pixels[..., 1] - cy) / fy * depths
        pc = torch.stack([x, y, depths], dim=-1)
        c2w = self.camtoworlds
        return torch.einsum("cij,cnj->cni", c2w[:, :3, :3], pc) + c2w[:, None, :3, 3]

    def pixel_rays(self) -> tuple[Tensor, Tensor]:
        """Ray origins and unit directions through every pixel centre: ([C, H, W, 3], [C, H, W, 3])."""
        ys, xs = torch.meshgrid(
            torch.arange(self.height, dtype=self.Ks.dtype, device=self.device) + 0.5,
            torch.arange(self.width, dtype=self.Ks.dtype, device=self.device) + 0.5,
            indexing="ij",
        )
        fx, fy = self.Ks[:, 0, 0, None, None], self.Ks[:, 1, 1, None, None]
        cx, cy = self.Ks[:, 0, 2, None, None], self.Ks[:, 1, 2, None, None]
        d = torch.stack([(xs - cx) / fx, (ys - cy) / fy, torch.ones_like(xs - cx)], dim=-1)
        c2w = self.camtoworlds
        d = torch.einsum("cij,chwj->chwi", c2w[:, :3, :3], d)
        d = d / d.norm(dim=-1, keepdim=True)
        o = c2w[:, None, None, :3, 3].expand_as(d)
        return o, d

    # ---------------------------------------------------------- constructors
    @staticmethod
    def from_intrinsics(
        viewmats: Tensor, fx, fy, cx, cy, width: int, height: int
    ) -> "Cameras":
        C = viewmats.shape[0]
        K = torch.zeros(C, 3, 3, dtype=viewmats.dtype)
        K[:, 0, 0] = torch.as_tensor(fx, dtype=viewmats.dtype)
        K[:, 1, 1] = torch.as_tensor(fy, dtype=viewmats.dtype)
        K[:, 0, 2] = torch.as_tensor(cx, dtype=viewmats.dtype)
        K[:, 1, 2] = torch.as_tensor(cy, dtype=viewmats.dtype)
        K[:, 2, 2] = 1.0
        return Cameras(viewmats, K, width, height)

    @staticmethod
    def from_opengl_c2w(c2w, fx, fy, cx, cy, width: int, height: int) -> "Cameras":
        """From Blender/OpenGL camera-to-world matrices [C, 4, 4] or [C, 3, 4] (D-NeRF, NeRF-synthetic)."""
        c2w = _as_c2w(c2w)
        viewmats = torch.linalg.inv(c2w @ _GL_TO_CV)
        return Cameras.from_intrinsics(viewmats.float(), fx, fy, cx, cy, width, height)

    def to_opengl_c2w(self) -> Tensor:
        """Inverse of `from_opengl_c2w`: Blender/OpenGL camera-to-world matrices. [C, 4, 4]"""
        return self.camtoworlds.double() @ _GL_TO_CV

    @staticmethod
    def from_llff(poses_bounds) -> tuple["Cameras", Tensor]:
        """From an LLFF/Neu3D `poses_bounds.npy` array [N, 17]: (cameras, near/far bounds [N, 2]).

        The 3x5 block is [camera-to-world 3x4 | (H, W, focal)] with rotation columns ordered
        (down, right, backwards); reordered to OpenGL (right, up, backwards) = [c1, -c0, c2].
        """
        pb = np.asarray(poses_bounds, dtype=np.float64)
        if pb.ndim != 2 or pb.shape[1] != 17:
            raise ValueError(f"poses_bounds must have shape [N, 17], got {pb.shape}")
        poses = pb[:, :15].reshape(-1, 3, 5)
        h, w, f = poses[0, :, 4]
        c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
        cams = Cameras.from_opengl_c2w(torch.from_numpy(c2w), f, f, w / 2, h / 2, int(round(w)), int(round(h)))
        return cams, torch.from_numpy(pb[:, 15:17]).float()

    @staticmethod
    def look_at(eye, target, up=(0.0, 0.0, 1.0), fov_deg: float = 50.0, width: int = 256, height: int = 256) -> "Cameras":
        """Cameras at `eye` [C, 3] (or [3]) looking at `target`, with `up` pointing up in the image."""
        eye = torch.as_tensor(eye, dtype=torch.float64).reshape(-1, 3)
        target = torch.as_tensor(target, dtype=torch.float64).reshape(-1, 3).expand_as(eye)
        up = torch.as_tensor(up, dtype=torch.float64).reshape(-1, 3).expand_as(eye)
        z = target - eye
        z = z / z.norm(dim=-1, keepdim=True)
        x = torch.cross(z, up, dim=-1)  # image y = −up points down and x = y × z = z × up
        bad = x.norm(dim=-1) < 1e-8  # looking along up: pick any perpendicular axis
        if bad.any():
            alt = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand_as(z)
            x[bad] = torch.cross(z[bad], alt[bad], dim=-1)
        x = x / x.norm(dim=-1, keepdim=True)
        y = torch.cross(z, x, dim=-1)
        c2w = torch.eye(4, dtype=torch.float64).repeat(eye.shape[0], 1, 1)
        c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, eye
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        return Cameras.from_intrinsics(torch.linalg.inv(c2w).float(), f, f, width / 2, height / 2, width, height)

    @staticmethod
    def orbit(
        n: int,
        radius: float,
        elevation_deg: float = 20.0,
        target=(0.0, 0.0, 0.0),
        up=(0.0, 0.0, 1.0),
        fov_deg: float = 50.0,
        width: int = 256,
        height: int = 256,
        start_deg: float = 0.0,
    ) -> "Cameras":
        """`n` cameras evenly spaced on a circle around `target` (azimuth about `up`)."""
        az = torch.deg2rad(torch.arange(n, dtype=torch.float64) * 360.0 / n + start_deg)
        return Cameras.look_at(
            _sphere_points(az, torch.full_like(az, math.radians(elevation_deg)), radius, target, up),
            target, up, fov_deg, width, height,
        )

    @staticmethod
    def spiral(
        n: int,
        radius: float,
        elevation_range_deg: tuple[float, float] = (5.0, 40.0),
        turns: float = 2.0,
        target=(0.0, 0.0, 0.0),
        up=(0.0, 0.0, 1.0),
        fov_deg: float = 50.0,
        width: int = 256,
        height: int = 256,
    ) -> "Cameras":
        """`n` cameras on a spiral: `turns` revolutions while elevation goes up and back down."""
        s = torch.linspace(0, 1, n, dtype=torch.float64)
        az = 2 * math.pi * turns * s
        lo, hi = (math.radians(v) for v in elevation_range_deg)
        el = lo + (hi - lo) * 0.5 * (1 - torch.cos(2 * math.pi * s))
        return Cameras.look_at(_sphere_points(az, el, radius, target, up), target, up, fov_deg, width, height)


def _as_c2w(c2w) -> Tensor:
    c2w = torch.as_tensor(np.asarray(c2w), dtype=torch.float64)
    if c2w.dim() == 2:
        c2w = c2w[None]
    if c2w.shape[1] == 3:
        bottom = torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(c2w.shape[0], 1, 4)
        c2w = torch.cat([c2w, bottom], dim=1)
    return c2w


def _sphere_points(az: Tensor, el: Tensor, radius: float, target, up) -> Tensor:
    """Points at azimuth/elevation around `target` in a frame whose pole is `up`. [n, 3]"""
    up = torch.as_tensor(up, dtype=torch.float64)
    up = up / up.norm()
    a = torch.tensor([1.0, 0, 0], dtype=torch.float64)
    if abs(float(up @ a)) > 0.9:
        a = torch.tensor([0, 1.0, 0], dtype=torch.float64)
    e1 = a - (a @ up) * up
    e1 = e1 / e1.norm()
    e2 = torch.cross(up, e1, dim=0)
    d = (torch.cos(el) * torch.cos(az))[:, None] * e1 + (torch.cos(el) * torch.sin(az))[:, None] * e2
    d = d + torch.sin(el)[:, None] * up
    return torch.as_tensor(target, dtype=torch.float64) + radius * d


def sample_images(points: Tensor, cams: Cameras, images: Tensor) -> tuple[Tensor, Tensor]:
    """Colours of points in each camera's image.

    Args:
        points: [N, 3]; cams: V cameras; images: [V, H, W, 3] at the cameras' size.
    Returns:
        (colors [N, V, 3] bilinear at the projections, valid [N, V] in front of the camera and inside it).
    """
    import torch.nn.functional as F

    uv, z = cams.project(points)  # [V, N, 2], [V, N]
    V, H, W, _ = images.shape
    grid = torch.stack([uv[..., 0] / W * 2 - 1, uv[..., 1] / H * 2 - 1], -1)  # pixel-edge -> [-1, 1]
    col = F.grid_sample(images.permute(0, 3, 1, 2), grid[:, None].to(images), mode="bilinear",
                        padding_mode="border", align_corners=False)  # [V, 3, 1, N]
    valid = (z > 1e-6) & (grid.abs() <= 1).all(-1)
    return col[:, :, 0].permute(2, 0, 1), valid.T
