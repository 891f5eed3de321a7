"""Procedural dynamic scenes with exact ground truth (images, masks, depth, surface points).

The world (z up, content inside about [-1, 1]^2 x [-0.5, 0.4]) holds

- ``ground``: a static checkered disc at z = -0.5 (the static background region);
- ``sphere``: a rigid sphere with a latitude/longitude checker fixed in its object frame; it orbits the
  centre, bobs up and down and spins about a tilted axis;
- ``box``: a rigid oriented box with a colour per face and a checker fixed in its object frame; it orbits
  opposite the sphere while tumbling;
- ``ellipsoid``: a non-rigidly deforming ellipsoid ``x = c + A(t) u`` (``u`` on the unit sphere) whose axes
  breathe, twist and shear over time; its texture is a function of the material coordinate ``u``, so the
  pattern stretches with the surface.

Every pixel is rendered by exact analytic ray casting through the pixel centre (one sample, no
anti-aliasing): ray/plane, ray/oriented-box slab test, and ray/unit-sphere after mapping the ray through
``A(t)^-1``. Shading is albedo x (ambient + diffuse Lambert) under one fixed directional light. It is
view-independent (the same surface point has the same colour in every camera), with no shadows, so the
ground is identical across frames wherever no moving object covers it.

Per view the scene holds an RGBA uint8 image (alpha = 255 where a ray hits any surface, 0 elsewhere, so
`DynamicScene.image` composites the scene background there), a mask equal to that alpha (any surface hit,
ground included) and `View.depth`: camera-space z (OpenCV, scene units along the optical axis) at full
resolution, float32, 0 where the ray hits nothing.

Two camera schedules (`SyntheticConfig.schedule`):

- ``rig``: a synchronised rig; every camera sees every frame; the test split is the test cameras at all
  frames (multi-view video such as Neu3D or the EasyVolcap captures).
- ``monocular``: the D-NeRF situation. Each training frame is seen by ONE camera drawn at random (seeded)
  from the non-test cameras, so consecutive frames come from unrelated viewpoints (a "teleporting"
  camera); every `test_every`-th frame (offset test_every // 2) is held out and seen only by a test
  camera (cycling over `test_cameras`), so test times are distinct from training times as in D-NeRF.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.data.scene import ArrayImage, DynamicScene, View
from splat4d.data.shapes import (
    AffineSphere,
    GroundDisc,
    OrientedBox,
    SceneObject,
    as_f64,
    checker,
    lon_lat,
    mix_colors,
    rotation_matrix,
    shade,
)
from splat4d.errors import ConfigError, DatasetError

OBJECT_IDS: dict[str, int] = {"ground": 0, "sphere": 1, "box": 2, "ellipsoid": 3}
"""Object id per object name, as returned in `SyntheticWorld.render(...)["object_id"]` (-1 = no hit)."""

_TARGET = (0.0, 0.0, -0.15)  # every camera looks here
SCHEDULES = ("rig", "monocular")
"""Camera schedules: see the module docstring."""


@dataclass(frozen=True)
class SyntheticConfig:
    """A procedural scene: rig, time sampling and content."""

    num_cameras: int = 12
    """Cameras in the rig ("rig": each observes every frame) or in the pool a monocular schedule draws from."""
    num_frames: int = 20
    """Time steps; frame f is at time f / (num_frames - 1) (0 when there is one frame)."""
    width: int = 128
    """Image width in pixels (full resolution; `scale` of the scene resizes)."""
    height: int = 128
    """Image height in pixels."""
    seed: int = 0
    """Seeds the motion phases of the objects and the surface points; same seed, same scene."""
    camera_radius: float = 2.7
    """Distance of every camera from the look-at target (0, 0, -0.15)."""
    elevations_deg: tuple[float, ...] = (15.0, 40.0)
    """Camera elevations above the ground plane; camera i uses elevations_deg[i % len(elevations_deg)]."""
    azimuth_start_deg: float = 0.0
    """Azimuth of camera 0; camera i sits at azimuth_start_deg + 360 * i / num_cameras."""
    fov_deg: float = 45.0
    """Horizontal field of view of every camera."""
    test_cameras: tuple[int, ...] = (0,)
    """Held-out camera indices. "rig": the test split is these cameras at all frames, train is the rest;
    "monocular": the held-out test frames are seen by these cameras in turn, never by the training ones."""
    objects: tuple[str, ...] = ("ground", "sphere", "box", "ellipsoid")
    """Which objects the world holds (any subset of ground, sphere, box, ellipsoid)."""
    num_points: int = 4000
    """Initial points sampled exactly on the object surfaces at t = 0 (a quarter on the ground)."""
    speed: float = 1.0
    """Multiplies every object's motion and deformation; 0 gives a static scene. At 1.0 the sphere's centre
    travels 0.55 pi ~ 1.73 scene units over the clip (half an orbit of radius 0.55): ~4 diameters of the
    default sphere; the box, as far, ~5 of its longest edge (0.32)."""
    sphere_radius: float = 0.22
    """Radius of the sphere (the ground disc has radius 1)."""
    schedule: str = "rig"
    """Which camera sees which frame: "rig" (every camera, every frame) or "monocular" (one camera per
    frame, D-NeRF style; see the module docstring)."""
    test_every: int = 8
    """"monocular" only: frames f with f % test_every == test_every // 2 are test frames (held out of training)."""


PRESETS: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(test_cameras=(0, 7), speed=0.3),
    "tiny": SyntheticConfig(num_cameras=4, num_frames=4, width=32, height=32, num_points=1000, test_cameras=(0,)),
    "large": SyntheticConfig(
        num_cameras=16, num_frames=50, width=256, height=256, num_points=10000, test_cameras=(0, 9)
    ),
    "deforming": SyntheticConfig(
        num_cameras=12, num_frames=16, width=96, height=96, num_points=2000, objects=("ground", "ellipsoid"),
        speed=1.0, test_cameras=(1,),
    ),
    "fast": SyntheticConfig(
        num_cameras=24, num_frames=150, elevations_deg=(10.0, 30.0, 55.0), test_cameras=(0, 7, 14, 19),
        objects=("ground", "sphere", "box"), sphere_radius=0.12, speed=2.0, schedule="monocular",
    ),
}
"""Named scenes: "default" (12 cameras, 20 frames, 128x128, the demo; ~1.5 s to build on one core;
moderate motion (speed 0.3: the sphere and box travel about twice their size), the range deformation-field
methods such as 4DGaussians recover in a few thousand iterations),
"tiny" (4 cameras, 4 frames, 32x32, for tests; < 0.1 s), "deforming" (12 cameras, 16 frames,
96x96: the static ground disc and only the ellipsoid, which breathes, twists and leans through one
full cycle; a large static region and one small deforming object, DS4D's benchmark) and "large" (16 cameras, 50 frames, 256x256;
~15 s and ~0.5 GB). Cameras alternate between 15 and 40 degrees elevation around the ring.

"fast" reproduces a D-NeRF capture without real data: monocular schedule (one camera per frame, drawn
from a pool of 24 positions at 10/30/55 degrees elevation; cameras 0, 7, 14, 19 held out for the 19
test frames 4, 12, ..., 148; 131 training frames), 150 frames, 128x128, ground + a small sphere (radius
0.12) + the box, speed 2.0: over the clip the sphere's centre travels a full orbit, ~3.5 scene units
= ~14 sphere diameters (~0.1 diameter per frame; ~2.9 diameters per second if the 150 frames are 5 s at
30 fps), the box as far, ~11 of its longest edge; the sphere
spins two turns, the box tumbles one and a half, both bob. 1.8 s to
build on one core (measured on the busy shared 2-core machine, where "default" took 2.6 s)."""


@contextmanager
def _one_thread():
    """Run the ray caster on one torch thread, then restore the setting. Its many short elementwise ops
    gain at most 2x from two threads on an idle machine, but on a busy one the spinning worker threads
    made it 10-25x slower (measured on 2 shared cores: 0.08 s -> 1-2 s for "tiny", 1.4 s -> 33 s for
    "default"); predictable beats occasionally faster."""
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# ----------------------------------------------------------------------------- textures and motions
def _sphere_texture(u: Tensor) -> Tensor:
    lon, lat = lon_lat(u)
    w = checker(lon / (2 * math.pi) * 8, (lat / math.pi + 0.5) * 4)
    alb = mix_colors((0.88, 0.28, 0.22), (0.95, 0.90, 0.75), w)
    alb[u[:, 2] > 0.9] = as_f64((0.20, 0.30, 0.85))  # a polar cap makes the spin readable
    return alb


def _ellipsoid_texture(u: Tensor) -> Tensor:
    lon, _ = lon_lat(u)
    w = checker((u[:, 2] + 1) / 2 * 6, (lon / (2 * math.pi) + 0.5) * 6)
    return mix_colors((0.20, 0.65, 0.60), (0.95, 0.62, 0.18), w)


def _build_objects(cfg: SyntheticConfig) -> list[SceneObject]:
    gen = np.random.default_rng(cfg.seed)
    phase = gen.uniform(0, 2 * math.pi, size=4)
    tau = lambda t: cfg.speed * t  # noqa: E731
    orbit = 0.55

    def sphere_frame(t):
        s = tau(t)
        th = phase[0] + math.pi * s
        c = np.array([orbit * math.cos(th), orbit * math.sin(th), -0.18 + 0.08 * math.sin(2 * math.pi * s + phase[1])])
        return c, cfg.sphere_radius * rotation_matrix((0.3, 0.0, 1.0), 2 * math.pi * s + phase[1])

    def box_pose(t):
        s = tau(t)
        th = phase[0] + math.pi * s + math.pi  # opposite the sphere, so the two never meet
        c = np.array([orbit * math.cos(th), orbit * math.sin(th), -0.18 + 0.05 * math.cos(2 * math.pi * s + phase[2])])
        return c, rotation_matrix((1.0, 0.5, 1.0), 1.5 * math.pi * s + phase[2])

    def ellipsoid_frame(t):
        w = 2 * math.pi * tau(t)
        axes = np.array([0.17 * (1 + 0.3 * math.sin(w)), 0.17 * (1 - 0.2 * math.sin(w)), 0.3 * (1 + 0.2 * math.cos(w))])
        shear = np.eye(3)
        shear[0, 2] = 0.15 * math.sin(w + phase[3])  # leans: x += k z
        A = shear @ rotation_matrix((0, 0, 1), 0.6 * math.sin(w) + phase[3]) @ np.diag(axes)
        return np.array([0.0, 0.0, -0.12]), A

    makers = {
        "ground": lambda: GroundDisc(),
        "sphere": lambda: AffineSphere("sphere", sphere_frame, _sphere_texture),
        "box": lambda: OrientedBox(box_pose),
        "ellipsoid": lambda: AffineSphere("ellipsoid", ellipsoid_frame, _ellipsoid_texture),
    }
    return [makers[name]() for name in cfg.objects]


# ----------------------------------------------------------------------------- the world
class _CameraRays:
    """Pixel-centre rays of a camera batch in float64, computed once and reused for every frame."""

    def __init__(self, cameras: Cameras):
        cams = cameras.to(dtype=torch.float64)
        o, d = cams.pixel_rays()  # [C, H, W, 3] each
        C, H, W, _ = d.shape
        self.shape = (C, H, W)
        self.eyes = o[:, 0, 0]  # [C, 3]
        self.dirs = d.reshape(C, H * W, 3)
        self.forward = cams.viewmats[:, 2, :3]  # camera z axis in world coordinates, [C, 3]

    def subset(self, idx: list[int]) -> "_CameraRays":
        """The rays of cameras `idx` only (no recomputation)."""
        out = object.__new__(_CameraRays)
        out.shape = (len(idx), *self.shape[1:])
        out.eyes, out.dirs, out.forward = self.eyes[idx], self.dirs[idx], self.forward[idx]
        return out


class SyntheticWorld:
    """The analytic content of a `SyntheticConfig`: render any camera at any time with exact ground truth."""

    def __init__(self, cfg: SyntheticConfig):
        _validate(cfg)
        self.cfg = cfg
        self.objects = _build_objects(cfg)

    def object(self, name: str) -> SceneObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no object {name!r} (has {[o.name for o in self.objects]})")

    def times(self) -> list[float]:
        """Time of every frame, evenly spaced in [0, 1]."""
        F = self.cfg.num_frames
        return [f / (F - 1) if F > 1 else 0.0 for f in range(F)]

    def cameras(self) -> Cameras:
        """The rig: camera i at azimuth start + 360 i / C, elevation elevations[i % E]. [C]"""
        cfg = self.cfg
        az = np.radians(cfg.azimuth_start_deg + 360.0 * np.arange(cfg.num_cameras) / cfg.num_cameras)
        el = np.radians([cfg.elevations_deg[i % len(cfg.elevations_deg)] for i in range(cfg.num_cameras)])
        eye = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=1)
        eye = cfg.camera_radius * eye + np.asarray(_TARGET)
        return Cameras.look_at(eye, _TARGET, (0.0, 0.0, 1.0), cfg.fov_deg, cfg.width, cfg.height)

    def render(self, cameras: Cameras, t: float) -> dict[str, Tensor]:
        """Ray-cast every pixel centre of `cameras` at time t.

        Returns:
            rgb: shaded colour, 0 where nothing is hit. float32 [C, H, W, 3]
            alpha: 1 where a surface is hit, else 0. float32 [C, H, W]
            depth: camera-space z of the hit, 0 where nothing is hit. float32 [C, H, W]
            object_id: `OBJECT_IDS` of the visible object, -1 where nothing is hit. int64 [C, H, W]
        """
        with _one_thread():
            return self._render_rays(_CameraRays(cameras), t)

    def _render_rays(self, rays: "_CameraRays", t: float) -> dict[str, Tensor]:
        eyes, d = rays.eyes, rays.dirs  # [C, 3], [C, H * W, 3]
        C, H, W = rays.shape
        s, which = self._nearest_hits(eyes, d, t)  # [C * H * W] each
        o = eyes.repeat_interleave(H * W, dim=0)  # [R, 3]
        d = d.reshape(-1, 3)
        rgb = torch.zeros_like(d)
        ids = torch.full((d.shape[0],), -1, dtype=torch.int64)
        hit = torch.isfinite(s)
        for k, obj in enumerate(self.objects):
            idx = (hit & (which == k)).nonzero()[:, 0]
            if len(idx):
                normal, albedo = obj.surface(o[idx], d[idx], s[idx], t)
                rgb[idx] = shade(normal, albedo)
                ids[idx] = OBJECT_IDS[obj.name]
        cos = torch.einsum("cni,ci->cn", rays.dirs, rays.forward).reshape(C, H, W)
        depth = torch.where(hit.reshape(C, H, W), s.reshape(C, H, W) * cos, torch.zeros_like(cos))
        return {
            "rgb": rgb.reshape(C, H, W, 3).float(),
            "alpha": hit.reshape(C, H, W).float(),
            "depth": depth.float(),
            "object_id": ids.reshape(C, H, W),
        }

    def _nearest_hits(self, eyes: Tensor, d: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """Nearest hit distance and object index per ray (inf / -1 on a miss). eyes [C, 3], d [C, N, 3].

        Only rays inside the cone from the camera to an object's bounding sphere are intersected with it:
        most rays miss the small objects, so this is several times faster than testing every ray.
        """
        C, N, _ = d.shape
        s_best = torch.full((C * N,), math.inf, dtype=torch.float64)
        which = torch.full((C * N,), -1, dtype=torch.int64)
        d_flat = d.reshape(-1, 3)
        for k, obj in enumerate(self.objects):
            c, r = obj.bounding_sphere(t)
            v = as_f64(c)[None] - eyes  # [C, 3]
            dist = v.norm(dim=-1)
            cos_min = (1 - (r / dist.clamp(min=1e-12)) ** 2).clamp(min=0).sqrt()
            cos_min = torch.where(dist <= r, torch.full_like(cos_min, -2.0), cos_min - 1e-9)
            cand = (torch.einsum("cni,ci->cn", d, v / dist[:, None]) >= cos_min[:, None]).reshape(-1)
            idx = cand.nonzero()[:, 0]
            if len(idx) == 0:
                continue
            s = obj.intersect(eyes[idx // N], d_flat[idx], t)
            closer = s < s_best[idx]
            s_best[idx[closer]] = s[closer]
            which[idx[closer]] = k
        return s_best, which

    def sample_points(self, n: int, t: float = 0.0, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """n points exactly on the surfaces at time t with their (view-independent) colours.

        A quarter go to the ground when present, the rest are split evenly over the other objects.
        Returns (xyz [n, 3], rgb [n, 3] in [0, 1]), float32.
        """
        gen = np.random.default_rng(self.cfg.seed + 1 if seed is None else seed)
        objs = self.objects
        if not objs or n <= 0:
            return torch.zeros(0, 3), torch.zeros(0, 3)
        movers = [o for o in objs if o.name != "ground"]
        has_ground = len(movers) < len(objs)
        n_ground = 0 if not has_ground else (n // 4 if movers else n)
        counts = {"ground": n_ground}
        for i, o in enumerate(movers):
            counts[o.name] = (n - n_ground) // len(movers) + (1 if i < (n - n_ground) % len(movers) else 0)
        xyz, rgb = [], []
        for o in objs:
            if counts[o.name]:
                p, normal, albedo = o.sample(counts[o.name], t, gen)
                xyz.append(p)
                rgb.append(shade(normal, albedo))
        return torch.cat(xyz).float(), torch.cat(rgb).float()

    def bounds(self, margin: float = 0.05) -> Tensor:
        """Axis-aligned box around all content over t in [0, 1], found by sampling the surfaces. [2, 3]"""
        gen = np.random.default_rng(12345)
        pts = [o.sample(256, t, gen)[0] for o in self.objects for t in np.linspace(0, 1, 17)]
        if not pts:
            return torch.tensor([[-1.0] * 3, [1.0] * 3])
        p = torch.cat(pts)
        return torch.stack([p.amin(0) - margin, p.amax(0) + margin]).float()


def _validate(cfg: SyntheticConfig) -> None:
    if cfg.num_cameras < 1 or cfg.num_frames < 1 or cfg.width < 1 or cfg.height < 1:
        raise ConfigError("synthetic scene needs num_cameras, num_frames, width and height >= 1")
    if not cfg.elevations_deg:
        raise ConfigError("synthetic scene needs at least one camera elevation")
    bad = [i for i in cfg.test_cameras if not 0 <= i < cfg.num_cameras]
    if bad:
        raise ConfigError(f"test_cameras {bad} out of range for {cfg.num_cameras} cameras")
    if len(set(cfg.test_cameras)) >= cfg.num_cameras:
        raise ConfigError("test_cameras leave no camera for training")
    unknown = [o for o in cfg.objects if o not in OBJECT_IDS]
    if unknown:
        raise ConfigError(f"unknown synthetic objects {unknown} (choose from {sorted(OBJECT_IDS)})")
    if not (isinstance(cfg.sphere_radius, (int, float)) and 0 < cfg.sphere_radius < 1):
        raise ConfigError(f"sphere_radius must be in (0, 1), got {cfg.sphere_radius!r}")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown synthetic schedule {cfg.schedule!r} (choose from {', '.join(SCHEDULES)})")
    if cfg.schedule == "monocular":
        if isinstance(cfg.test_every, bool) or not isinstance(cfg.test_every, int) or cfg.test_every < 1:
            raise ConfigError(f"test_every must be an integer >= 1, got {cfg.test_every!r}")
        n_test = sum(f % cfg.test_every == cfg.test_every // 2 for f in range(cfg.num_frames))
        if not cfg.test_cameras or n_test == 0 or n_test == cfg.num_frames:
            raise ConfigError(
                f"the monocular schedule needs test_cameras and both test and training frames: "
                f"{cfg.num_frames} frames with test_every={cfg.test_every} give {n_test} test frame(s)")


def synthetic_config(name: str = "default", **overrides) -> SyntheticConfig:
    """The preset `name` with fields replaced by `overrides` (e.g. num_frames=8)."""
    if name not in PRESETS:
        raise DatasetError(f"unknown synthetic scene {name!r} (presets: {', '.join(PRESETS)})")
    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown synthetic scene options {unknown} (valid: {sorted(fields)})")
    for key in ("elevations_deg", "test_cameras", "objects"):
        if key in overrides and not isinstance(overrides[key], tuple):
            overrides[key] = tuple(overrides[key])
    return dataclasses.replace(PRESETS[name], **overrides)


def load_synthetic(
    name: str = "default",
    scale: float = 1.0,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    **overrides,
) -> DynamicScene:
    """Render the preset `name` (see `PRESETS`; fields overridable) into a `DynamicScene`.

    Which camera sees which frame follows `schedule` (`camera_schedule`): with "rig" all cameras observe
    all frames and the test split is `test_cameras` at every frame; with "monocular" one camera sees each
    frame and the test frames are held out of training. Views are ordered frame-major. Images are
    rendered eagerly at full resolution; the scene's `scale` resizes them (and the cameras) on read.
    Points are sampled on the surfaces at t = 0.
    """
    cfg = synthetic_config(name, **overrides)
    with _one_thread():
        return _build_scene(cfg, name, scale, background)


def camera_schedule(cfg: SyntheticConfig) -> list[list[tuple[int, str]]]:
    """Per frame, the (camera index, split) pairs that observe it, in camera order (see `schedule`).

    "monocular" draws each training frame's camera uniformly from the non-test cameras with a generator
    seeded by `cfg.seed` (independent of the motion phases), so the schedule is fixed by the seed.
    """
    _validate(cfg)
    test = sorted(set(cfg.test_cameras))
    if cfg.schedule == "rig":
        return [[(c, "test" if c in test else "train") for c in range(cfg.num_cameras)]
                for _ in range(cfg.num_frames)]
    pool = [c for c in range(cfg.num_cameras) if c not in test]
    gen = np.random.default_rng([cfg.seed, 0x5C4ED])  # its own stream: the object phases stay as they were
    picks = gen.integers(0, len(pool), size=cfg.num_frames)
    out, k = [], 0
    for f in range(cfg.num_frames):
        if f % cfg.test_every == cfg.test_every // 2:
            out.append([(cfg.test_cameras[k % len(cfg.test_cameras)], "test")])
            k += 1
        else:
            out.append([(pool[int(picks[f])], "train")])
    return out


def _build_scene(cfg: SyntheticConfig, name: str, scale: float, background) -> DynamicScene:
    world = SyntheticWorld(cfg)
    cams = world.cameras()
    C, H, W = cfg.num_cameras, cfg.height, cfg.width
    schedule = camera_schedule(cfg)
    times = world.times()
    rays = _CameraRays(cams)
    splits: dict[str, list[View]] = {"train": [], "test": []}
    for f, (t, seen) in enumerate(zip(times, schedule)):
        idx = [c for c, _ in seen]
        out = world._render_rays(rays if len(idx) == C else rays.subset(idx), t)
        rgba = np.zeros((len(idx), H, W, 4), dtype=np.uint8)  # one block per frame; views share it
        rgba[..., :3] = (out["rgb"] * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
        mask = (out["alpha"] * 255).to(torch.uint8).numpy()
        rgba[..., 3] = mask
        depth = out["depth"].numpy()
        for i, (c, split) in enumerate(seen):
            tag = f"synthetic:{name}/cam{c:02d}/frame{f:03d}"
            splits[split].append(View(
                camera=cams[c],
                time=t,
                cam_id=c,
                frame_id=f,
                image=ArrayImage(rgba[i], tag),
                mask=ArrayImage(mask[i], tag + "/mask"),
                depth=depth[i],
            ))
    points, colors = world.sample_points(cfg.num_points, t=0.0)
    return DynamicScene(
        name=name,
        format="synthetic",
        splits=splits,
        background=tuple(float(v) for v in background),
        scale=float(scale),
        bounds=world.bounds(),
        points=points,
        point_colors=colors,
        num_cameras=C,
        num_frames=cfg.num_frames,
        up=(0.0, 0.0, 1.0),
    )
