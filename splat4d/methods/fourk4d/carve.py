"""Space carving (4K4D's point initialisation): per frame, the visual hull of synchronized cameras'
foreground masks as a fixed number of points.

Per frame: voxels of the scene box at a coarse size are kept where they project inside the foreground
mask of at least `min_fraction` of the cameras that see them and are seen by at least `min_cameras`;
each kept voxel is split into `refine`^3 and the test repeated (coarse to fine, as 4K4D's 15 mm then
5 mm); kept voxels with fewer than `min_neighbors` kept neighbours are dropped as outliers; the surface
voxels (a 6-neighbour not kept) are resampled to exactly `points` points.

The test is conservative: a voxel counts as inside a mask when the mask has a foreground pixel within
the voxel's projected radius of its centre (the mask dilated by that radius), so a voxel that holds
part of the object is never carved away because its centre projects just outside a thin silhouette.
The hull therefore contains the object and exceeds it by about a fine voxel where enough cameras agree
(more in concavities no camera sees into: a visual hull is the most any set of silhouettes can tell).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from splat4d.cameras import Cameras
from splat4d.config_checks import check_choice, check_float, check_int
from splat4d.errors import ConfigError, DatasetError


@dataclass
class CarveConfig:
    """Visual-hull carving of one frame's foreground masks into a point cloud."""

    coarse_resolution: int = 48
    """Coarse voxels along the longest side of the scene box."""
    refine: int = 3
    """Each kept coarse voxel is split into refine^3 fine voxels and tested again (1: one level)."""
    min_fraction: float = 0.95
    """A voxel is kept when it projects inside the mask of at least this fraction of the cameras that see it."""
    min_cameras: int = 3
    """... and at least this many cameras see it (a frame needs at least this many views)."""
    min_neighbors: int = 2
    """Kept fine voxels with fewer kept neighbours (of 26) are outliers and dropped (0: keep all)."""
    points: int = 20000
    """Points per frame after resampling (exactly this many; with replacement when the hull is smaller)."""
    surface_only: bool = True
    """Resample the hull's surface voxels only (the inside is never seen); with points_from "hull"."""
    points_from: str = "rays"
    """Where a frame's points lie: "hull" (uniformly in the hull's (surface) voxels, as 4K4D) or "rays" (on
    rays through the masks' pixels, at the depth inside the hull where the frame's cameras agree on the
    pixel's colour: `surface`). Synthetic default scene, frame 0: median distance to the true surfaces 3.22
    fine voxels from the hull, 1.09 on rays (benchmarks/fourk4d_points.py)."""
    seed: int = 0
    """Seed of the resampling."""

    def validate(self, prefix: str = "carve") -> None:
        check_int(f"{prefix}.coarse_resolution", self.coarse_resolution, 2, 1024)
        check_int(f"{prefix}.refine", self.refine, 1, 8)
        check_float(f"{prefix}.min_fraction", self.min_fraction, 0, 1, lo_open=True)
        check_int(f"{prefix}.min_cameras", self.min_cameras, 1)
        check_int(f"{prefix}.min_neighbors", self.min_neighbors, 0, 26)
        check_int(f"{prefix}.points", self.points, 1)
        check_int(f"{prefix}.seed", self.seed, 0)
        check_choice(f"{prefix}.points_from", self.points_from, ("hull", "rays"))
        if self.coarse_resolution * self.refine > 1024:
            raise ConfigError(f"{prefix}.coarse_resolution x {prefix}.refine must be at most 1024 (a dense fine grid "
                              f"of that many voxels per side), got {self.coarse_resolution * self.refine}")


@dataclass
class Hull:
    """One frame's carved hull: fine voxel centres kept, their size, and the resampled points."""

    voxels: Tensor  # [V, 3] centres of the kept fine voxels
    voxel_size: float
    surface: Tensor  # [V] bool, a 6-neighbour was carved away
    points: Tensor  # [P, 3] resampled points (uniform inside the chosen voxels)


def inside_masks(centers: Tensor, radius: float, cams: Cameras, masks: Tensor, chunk: int = 65536) -> tuple[Tensor, Tensor]:
    """How many cameras see each voxel and how many of those have it inside their foreground mask.

    Args:
        centers: [N, 3] voxel centres (world).
        radius: the voxels' bounding-sphere radius (world units).
        cams: C cameras; masks: [C, H, W] bool foreground.
    Returns:
        (seen [N] int, inside [N] int).
    """
    C, H, W = masks.shape
    seen = torch.zeros(len(centers), dtype=torch.long, device="cpu")
    inside = torch.zeros(len(centers), dtype=torch.long, device="cpu")
    for s in range(0, len(centers), chunk):
        uv, z = cams.project(centers[s:s + chunk])  # [C, n, 2], [C, n]
        u, v = uv[..., 0], uv[..., 1]
        vis = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        ui, vi = u.long().clamp(0, W - 1), v.long().clamp(0, H - 1)
        hit = torch.zeros_like(vis)
        focal = cams.Ks[:, 0, 0].abs().maximum(cams.Ks[:, 1, 1].abs())
        for c in range(C):
            if not vis[c].any():
                continue
            # each voxel tests the mask dilated by its own projected radius (one dilation per distinct radius)
            r_px = torch.ceil(focal[c] * radius / z[c].clamp(min=1e-6)).long().clamp(0, max(H, W))
            for r in torch.unique(r_px[vis[c]]).tolist():
                sel = vis[c] & (r_px == r)
                m = masks[c].float()[None, None]
                if r > 0:
                    m = F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)
                hit[c, sel] = m[0, 0][vi[c, sel], ui[c, sel]] > 0
        seen[s:s + chunk] = vis.sum(0)
        inside[s:s + chunk] = hit.sum(0)
    return seen, inside


def _keep(seen: Tensor, inside: Tensor, cfg: CarveConfig) -> Tensor:
    need = torch.ceil(seen.double() * cfg.min_fraction - 1e-9).long()
    return (seen >= cfg.min_cameras) & (inside >= need)


def carve_frame(cams: Cameras, masks: Tensor, bounds: Tensor, cfg: CarveConfig,
                generator: torch.Generator | None = None) -> Hull:
    """The visual hull of one frame (see the module docstring).

    Args:
        cams: the C cameras of the frame; masks: [C, H, W] bool foreground at the cameras' size.
        bounds: [2, 3] box to carve.
    Raises:
        DatasetError: nothing is left (no voxel is inside enough masks).
    """
    cams = cams.to(dtype=torch.float32)
    lo, hi = bounds[0].float(), bounds[1].float()
    size = float((hi - lo).max()) / cfg.coarse_resolution
    dims = torch.clamp(torch.ceil((hi - lo) / size).long(), min=1)  # coarse cells per axis
    grid = torch.stack(torch.meshgrid(*(torch.arange(int(n), device="cpu") for n in dims), indexing="ij"), -1).reshape(-1, 3)
    cells = grid  # integer coordinates at the current level
    for level in range(2 if cfg.refine > 1 else 1):
        if level == 1:  # split each kept coarse voxel into refine^3
            r = cfg.refine
            sub = torch.stack(torch.meshgrid(*(torch.arange(r, device="cpu"),) * 3, indexing="ij"), -1).reshape(-1, 3)
            cells = (cells[:, None] * r + sub[None]).reshape(-1, 3)
            size /= r
        centers = lo + (cells.float() + 0.5) * size
        seen, inside = inside_masks(centers, size * math.sqrt(3) / 2, cams, masks)
        cells = cells[_keep(seen, inside, cfg)]
        if len(cells) == 0:
            raise DatasetError("empty visual hull: no voxel lies inside the masks of enough cameras "
                               f"(min_fraction {cfg.min_fraction}, min_cameras {cfg.min_cameras})")
    fine_dims = dims * cfg.refine
    occ = torch.zeros(*(int(n) for n in fine_dims), dtype=torch.float32, device="cpu")
    occ[cells[:, 0], cells[:, 1], cells[:, 2]] = 1.0
    if cfg.min_neighbors > 0:
        count = F.conv3d(occ[None, None], torch.ones(1, 1, 3, 3, 3, device="cpu"), padding=1)[0, 0] - occ
        keep = count[cells[:, 0], cells[:, 1], cells[:, 2]] >= cfg.min_neighbors
        if not keep.any():
            raise DatasetError(f"empty visual hull: every kept voxel has fewer than {cfg.min_neighbors} kept neighbours")
        gone = cells[~keep]
        occ[gone[:, 0], gone[:, 1], gone[:, 2]] = 0.0
        cells = cells[keep]
    cross = torch.zeros(1, 1, 3, 3, 3, device="cpu")
    cross[0, 0, 1, 1, [0, 2]] = cross[0, 0, 1, [0, 2], 1] = cross[0, 0, [0, 2], 1, 1] = 1.0
    full = F.conv3d(occ[None, None], cross, padding=1)[0, 0]
    surface = full[cells[:, 0], cells[:, 1], cells[:, 2]] < 6
    centers = lo + (cells.float() + 0.5) * size
    gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
    pool = centers[surface] if cfg.surface_only and surface.any() else centers
    if len(pool) >= cfg.points:
        idx = torch.randperm(len(pool), generator=gen, device="cpu")[: cfg.points]
    else:
        idx = torch.randint(len(pool), (cfg.points,), generator=gen, device="cpu")
    pts = pool[idx] + (torch.rand(cfg.points, 3, generator=gen, device="cpu") - 0.5) * size
    return Hull(centers, size, surface, pts)


def frame_points(hull: Hull, cams: Cameras, masks: Tensor, images: Tensor, bounds: Tensor, cfg: CarveConfig,
                 generator: torch.Generator | None = None) -> Tensor:
    """The frame's cfg.points points [P, 3] as `points_from` says: the hull's resampled points, or points on
    the masks' rays (`surface.surface_points`; images [C, H, W, 3] in [0, 1]; the hull's points when no ray
    enters the hull)."""
    if cfg.points_from == "hull":
        return hull.points
    from splat4d.methods.fourk4d.surface import HullGrid, surface_points

    gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
    pts = surface_points(cams, images, masks, HullGrid(hull.voxels, hull.voxel_size, bounds), bounds, cfg.points, gen)
    return pts if len(pts) else hull.points


def frame_masks(scene, views, background=None, threshold: float = 0.5, use_masks: bool = True) -> Tensor:
    """[C, H, W] bool foreground masks of `views`: each view's mask (mask file or RGBA alpha) above
    `threshold`, else (or with `use_masks` False) pixels that differ from `background` (RGB in [0, 1]) when
    one is given.

    Raises:
        DatasetError: a view has no mask and no background colour was given (naming the view).
    """
    from splat4d.data.foreground import foreground_mask

    out = []
    for v in views:
        a = scene.alpha(v) if use_masks else None
        if a is not None:
            out.append(a > threshold)
        elif background is not None:
            out.append(torch.from_numpy(foreground_mask(scene.image_uint8(v), background)))
        else:
            raise DatasetError(f"camera {v.cam_id} frame {v.frame_id} ({v.image.name}) has no foreground mask: carving "
                               "needs masks (masks/<cam>/<frame>.jpg beside images/, or RGBA images), or a known "
                               "background colour to derive them from (--background R,G,B)")
    return torch.stack(out)


def frames_of(scene, split: str, min_cameras: int) -> dict[int, list]:
    """Views of `split` grouped by frame id, each frame with at least `min_cameras` views.

    Raises:
        DatasetError: a frame has fewer views (e.g. a D-NeRF capture, one camera per time step).
    """
    frames: dict[int, list] = {}
    for v in scene.split(split):
        frames.setdefault(int(v.frame_id), []).append(v)
    if not frames:
        raise DatasetError(f"the {split} split has no views")
    for f, views in sorted(frames.items()):
        if len(views) < min_cameras:
            raise DatasetError(f"frame {f} is seen by {len(views)} camera(s); carving a visual hull per frame needs "
                               f"synchronized cameras, at least {min_cameras} per frame (--carve.min-cameras); a "
                               "capture with one camera per time step (D-NeRF style) cannot be carved")
    return dict(sorted(frames.items()))


def point_colors(points: Tensor, scene, views, masks: Tensor) -> Tensor:
    """Mean image colour of each point over the cameras whose mask it projects inside ([P, 3] in [0, 1];
    grey where none): for looking at the carved cloud, not for training (occlusion is ignored)."""
    cams = Cameras.cat([scene.camera(v) for v in views])
    uv, z = cams.project(points)
    C, H, W = masks.shape
    u, v = uv[..., 0].long(), uv[..., 1].long()
    ok = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    u, v = u.clamp(0, W - 1), v.clamp(0, H - 1)
    total = torch.zeros(len(points), 3, device="cpu")
    count = torch.zeros(len(points), 1, device="cpu")
    for c, view in enumerate(views):
        img = scene.image(view)  # [H, W, 3]
        hit = ok[c] & masks[c][v[c], u[c]]
        total[hit] += img[v[c][hit], u[c][hit]]
        count[hit] += 1
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, 0.5))


def carve_scene(scene, cfg: CarveConfig, split: str = "train", background=None, progress: bool = True) -> list[dict]:
    """Carve every frame of `split` (see `carve_frame`). Returns per frame: frame, time, hull, colours."""
    from tqdm import tqdm

    frames = frames_of(scene, split, cfg.min_cameras)
    out = []
    bar = tqdm(frames.items(), desc="carve", unit="frame", disable=not progress)
    for f, views in bar:
        masks = frame_masks(scene, views, background)
        cams = Cameras.cat([scene.camera(v) for v in views])
        gen = torch.Generator().manual_seed(cfg.seed + f)
        try:
            hull = carve_frame(cams, masks, scene.bounds, cfg, gen)
        except DatasetError as e:
            raise DatasetError(f"frame {f}: {e}") from None
        if cfg.points_from != "hull":
            images = torch.stack([torch.from_numpy(scene.image_uint8(v)).float() / 255.0 for v in views])
            hull = dataclasses.replace(hull, points=frame_points(hull, cams, masks, images, scene.bounds, cfg, gen))
        out.append({"frame": f, "time": float(views[0].time), "hull": hull,
                    "colors": point_colors(hull.points, scene, views, masks)})
        bar.set_postfix(voxels=len(hull.voxels), surface=int(hull.surface.sum()))
    return out


def write_carved(out_dir, frames: list[dict], cfg: CarveConfig, source: str) -> None:
    """One PLY per frame (`<frame:06d>.ply`, points with their colours) and `carve.json` (settings and per
    frame: time, voxel size, kept and surface voxels). The folder appears whole or not at all: written
    beside it under a temporary name, then renamed (a previous carve's folder is replaced)."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from splat4d.io.ply import save_points_ply

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "carve.json").is_file():
        raise ConfigError(f"--out {out} holds files that are not a carve (no carve.json): choose an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rows = []
        for fr in frames:
            h = fr["hull"]
            save_points_ply(tmp / f"{fr['frame']:06d}.ply", h.points, fr["colors"])
            rows.append({"frame": fr["frame"], "time": fr["time"], "voxel_size": h.voxel_size,
                         "voxels": len(h.voxels), "surface_voxels": int(h.surface.sum()), "points": len(h.points)})
        meta = {"source": source, "config": dataclasses.asdict(cfg), "frames": rows}
        (tmp / "carve.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
