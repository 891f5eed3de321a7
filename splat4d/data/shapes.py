"""Analytic, textured surfaces that can be ray-cast exactly (the content of the synthetic scenes).

Rays are rows of float64 tensors: origins o [R, 3] and unit directions d [R, 3]. Each surface returns the
distance to its first hit, and at hits its world normal and albedo (texture fixed in object or material
coordinates). `shade` turns (normal, albedo) into a view-independent colour under one fixed light.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

LIGHT = np.array([0.4, 0.3, 1.0]) / np.linalg.norm([0.4, 0.3, 1.0])
"""Unit direction towards the directional light."""
AMBIENT = 0.35
"""Ambient fraction: colour = albedo * (AMBIENT + (1 - AMBIENT) * max(0, n . LIGHT))."""


def rotation_matrix(axis, angle: float) -> np.ndarray:
    """Rodrigues rotation about `axis` by `angle` radians. [3, 3]"""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def as_f64(x) -> Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def shade(normal: Tensor, albedo: Tensor) -> Tensor:
    """View-independent Lambert + ambient. normal, albedo: [R, 3] -> colour [R, 3]."""
    ndl = (normal @ as_f64(LIGHT)).clamp(min=0.0)
    return (albedo * (AMBIENT + (1 - AMBIENT) * ndl)[:, None]).clamp(0.0, 1.0)


def checker(*cells: Tensor) -> Tensor:
    """1 where the sum of integer cell indices is even, else 0. [R]"""
    return (sum(torch.floor(c) for c in cells).remainder(2) == 0).to(torch.float64)


def mix_colors(a, b, w: Tensor) -> Tensor:
    """Per-ray choice between colours a and b with weight w in {0, 1}. [R, 3]"""
    return as_f64(a) * w[:, None] + as_f64(b) * (1 - w[:, None])


def unit_sphere_points(n: int, gen: np.random.Generator) -> np.ndarray:
    v = gen.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- surfaces
class SceneObject:
    """One analytic surface. Rays are rows: origins o [R, 3], unit directions d [R, 3], float64."""

    name = "object"

    def intersect(self, o: Tensor, d: Tensor, t: float) -> Tensor:
        """Distance along each ray to the first hit in front of the origin; inf on a miss. [R]"""
        raise NotImplementedError

    def surface(self, o: Tensor, d: Tensor, s: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """(world normal [R, 3], albedo [R, 3]) at the hits o + s d (every ray must hit)."""
        raise NotImplementedError

    def sample(self, n: int, t: float, gen: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """n points on the surface at time t: (xyz [n, 3], normal [n, 3], albedo [n, 3])."""
        raise NotImplementedError

    def center(self, t: float) -> np.ndarray:
        """Object centre at time t. [3]"""
        raise NotImplementedError

    def bounding_sphere(self, t: float) -> tuple[np.ndarray, float]:
        """(centre [3], radius) of a sphere holding the whole object at time t (for ray culling)."""
        raise NotImplementedError


class GroundDisc(SceneObject):
    """Static checkered disc of `radius` in the plane z = `height`, facing +z."""

    name = "ground"

    def __init__(self, height: float = -0.5, radius: float = 1.0, cell: float = 0.25):
        self.height, self.radius, self.cell = height, radius, cell

    def intersect(self, o, d, t):
        dz = torch.where(d[:, 2].abs() < 1e-12, torch.full_like(d[:, 2], 1e-12), d[:, 2])
        s = (self.height - o[:, 2]) / dz
        xy = o[:, :2] + s[:, None] * d[:, :2]
        ok = (s > 0) & ((xy * xy).sum(-1) <= self.radius**2)
        return torch.where(ok, s, torch.full_like(s, math.inf))

    def _albedo(self, xy: Tensor) -> Tensor:
        w = checker(xy[:, 0] / self.cell, xy[:, 1] / self.cell)
        alb = mix_colors((0.72, 0.70, 0.64), (0.38, 0.42, 0.47), w)
        rim = xy.norm(dim=-1) > 0.93 * self.radius
        alb[rim] = as_f64((0.22, 0.24, 0.32))
        return alb

    def surface(self, o, d, s, t):
        x = o + s[:, None] * d
        n = torch.zeros_like(x)
        n[:, 2] = 1.0
        return n, self._albedo(x[:, :2])

    def sample(self, n, t, gen):
        r = self.radius * np.sqrt(gen.uniform(size=n))
        a = gen.uniform(0, 2 * math.pi, size=n)
        xyz = as_f64(np.stack([r * np.cos(a), r * np.sin(a), np.full(n, self.height)], axis=1))
        normal = torch.zeros_like(xyz)
        normal[:, 2] = 1.0
        return xyz, normal, self._albedo(xyz[:, :2])

    def center(self, t):
        return np.array([0.0, 0.0, self.height])

    def bounding_sphere(self, t):
        return self.center(t), self.radius


class AffineSphere(SceneObject):
    """The unit sphere under a time-varying affine map: x = c(t) + A(t) u, |u| = 1.

    The texture is a function of the material coordinate u, so it moves (rigid A) or stretches
    (general A) with the surface. A ray maps to o' = A^-1 (o - c), d' = A^-1 d; the hit distance s is the
    same in both frames because the map is affine, and the world normal is A^-T u.
    """

    def __init__(self, name: str, frame_fn, texture_fn):
        self.name = name
        self.frame = frame_fn  # t -> (c [3], A [3, 3]) numpy
        self.texture = texture_fn  # u [R, 3] -> albedo [R, 3]

    def _frame(self, t: float) -> tuple[Tensor, Tensor, Tensor]:
        c, A = self.frame(t)
        return as_f64(c), as_f64(A), as_f64(np.linalg.inv(A))

    def intersect(self, o, d, t):
        c, _, Ainv = self._frame(t)
        op, dp = (o - c) @ Ainv.T, d @ Ainv.T
        a = (dp * dp).sum(-1)
        b = (op * dp).sum(-1)
        cc = (op * op).sum(-1) - 1.0
        disc = b * b - a * cc
        s = (-b - disc.clamp(min=0).sqrt()) / a
        return torch.where((disc >= 0) & (s > 0), s, torch.full_like(s, math.inf))

    def surface(self, o, d, s, t):
        c, _, Ainv = self._frame(t)
        u = (o - c) @ Ainv.T + s[:, None] * (d @ Ainv.T)
        u = u / u.norm(dim=-1, keepdim=True)
        n = u @ Ainv  # rows of A^-T u
        return n / n.norm(dim=-1, keepdim=True), self.texture(u)

    def sample(self, n, t, gen):
        c, A, Ainv = self._frame(t)
        u = as_f64(unit_sphere_points(n, gen))
        nrm = u @ Ainv
        return c + u @ A.T, nrm / nrm.norm(dim=-1, keepdim=True), self.texture(u)

    def center(self, t):
        return np.asarray(self.frame(t)[0], dtype=np.float64)

    def bounding_sphere(self, t):
        c, A = self.frame(t)
        return np.asarray(c, dtype=np.float64), float(np.linalg.norm(A, 2))


class OrientedBox(SceneObject):
    """A rigid box with half extents `half`, pose (c(t), R(t)); a colour per face times a checker."""

    name = "box"
    FACE_COLORS = ((0.90, 0.30, 0.30), (0.30, 0.80, 0.35), (0.30, 0.45, 0.90),
                   (0.92, 0.80, 0.25), (0.80, 0.35, 0.80), (0.25, 0.80, 0.80))  # -x, +x, -y, +y, -z, +z

    def __init__(self, pose_fn, half=(0.16, 0.11, 0.13), cell: float = 0.08):
        self.pose = pose_fn  # t -> (c [3], R [3, 3]) numpy, R maps box axes to world
        self.half = np.asarray(half, dtype=np.float64)
        self.cell = cell

    def intersect(self, o, d, t):
        c, R = (as_f64(v) for v in self.pose(t))
        h = as_f64(self.half)
        p, q = (o - c) @ R, d @ R  # ray in box coordinates (rows of R^T x)
        q = torch.where(q.abs() < 1e-12, torch.full_like(q, 1e-12), q)
        t1, t2 = (-h - p) / q, (h - p) / q
        tn = torch.minimum(t1, t2).amax(-1)
        tf = torch.maximum(t1, t2).amin(-1)
        return torch.where((tn <= tf) & (tn > 0), tn, torch.full_like(tn, math.inf))

    def _local_surface(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """Local points on the box [R, 3] -> (local normal [R, 3], albedo [R, 3])."""
        h = as_f64(self.half)
        axis = (p.abs() / h).argmax(-1)
        sign = torch.sign(p.gather(1, axis[:, None])[:, 0])
        n = torch.zeros_like(p)
        n.scatter_(1, axis[:, None], sign[:, None])
        face = 2 * axis + (sign > 0).long()
        base = as_f64(self.FACE_COLORS)[face]
        cells = (p + h) / self.cell + 0.5  # in-face axes only: the normal axis sits on a cell edge
        cells = torch.where(n != 0, torch.zeros_like(cells), cells)
        w = checker(cells[:, 0], cells[:, 1], cells[:, 2])
        return n, base * (0.55 + 0.45 * w[:, None])

    def surface(self, o, d, s, t):
        c, R = (as_f64(v) for v in self.pose(t))
        p = (o + s[:, None] * d - c) @ R
        n, albedo = self._local_surface(p)
        return n @ R.T, albedo

    def sample(self, n, t, gen):
        c, R = (as_f64(v) for v in self.pose(t))
        h = self.half
        areas = np.array([h[1] * h[2], h[1] * h[2], h[0] * h[2], h[0] * h[2], h[0] * h[1], h[0] * h[1]])
        face = gen.choice(6, size=n, p=areas / areas.sum())
        p = gen.uniform(-1, 1, size=(n, 3)) * h
        axis = face // 2
        p[np.arange(n), axis] = np.where(face % 2 == 1, 1.0, -1.0) * h[axis]
        nl, albedo = self._local_surface(as_f64(p))
        return c + as_f64(p) @ R.T, nl @ R.T, albedo

    def center(self, t):
        return np.asarray(self.pose(t)[0], dtype=np.float64)

    def bounding_sphere(self, t):
        return self.center(t), float(np.linalg.norm(self.half))


def lon_lat(u: Tensor) -> tuple[Tensor, Tensor]:
    return torch.atan2(u[:, 1], u[:, 0]), torch.asin(u[:, 2].clamp(-1.0, 1.0))
