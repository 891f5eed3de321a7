"""Where fourk4d's points start: distance to the true surfaces of the synthetic default scene (frame 0, in
fine carving voxels) for the hull's resample, points on rays, and points on rays with lone points dropped;
and the MuJoCo capture's background points' height |z| (its floor is the plane z = 0), their depths ranked by
votes, by photo cost or by both (`data.ray_depths` choose) at 32 to 256 candidate depths per ray, over all
points, over the points whose ray meets the floor within 1 of its centre and over the others. Prints a table, writes benchmarks/results/fourk4d_points.json.

Usage: python benchmarks/fourk4d_points.py
"""

import json
import platform
import time
from pathlib import Path

import torch

from splat4d.cameras import Cameras
from splat4d.data import load_scene
from splat4d.data.foreground import _box_span, foreground_rays
from splat4d.data.ray_depths import consistent_points_on_rays
from splat4d.data.synthetic import SyntheticWorld, synthetic_config
from splat4d.methods.fourk4d import surface
from splat4d.methods.fourk4d.background import BOX_GROWTH, CANDIDATES
from splat4d.methods.fourk4d.carve import CarveConfig, carve_frame, frame_masks, frame_points, frames_of

TOSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mujoco-toss-12cam"


def distances(points, surf, voxel, chunk=2048):
    d = torch.cat([torch.cdist(points[i:i + chunk], surf).min(1).values for i in range(0, len(points), chunk)]) / voxel
    return {"median": float(d.median()), "within_2": float((d <= 2).float().mean()), "p99": float(d.quantile(0.99))}


def synthetic_rows():
    scene = load_scene("synthetic:default")
    views = frames_of(scene, "train", 3)[0]
    cams = Cameras.cat([scene.camera(v) for v in views])
    masks = frame_masks(scene, views)
    images = torch.stack([torch.from_numpy(scene.image_uint8(v)).float() / 255.0 for v in views])
    surf, _ = SyntheticWorld(synthetic_config("default")).sample_points(400000, float(views[0].time), seed=5)
    cfg = CarveConfig(points=20000)
    hull = carve_frame(cams, masks, scene.bounds, cfg, torch.Generator().manual_seed(0))
    rows = [{"points": "hull resample", **distances(hull.points, surf, hull.voxel_size)}]
    lone = surface.lone_points
    keep_all = lambda p, **kw: torch.zeros(len(p), dtype=torch.bool)  # noqa: E731
    for name, test in (("rays", keep_all), ("rays, lone points dropped (default)", lone)):
        surface.lone_points = test
        try:
            pts = frame_points(hull, cams, masks, images, scene.bounds, cfg, torch.Generator().manual_seed(0))
        finally:
            surface.lone_points = lone
        rows.append({"points": name, **distances(pts, surf, hull.voxel_size)})
    return rows


def toss_rows():
    if not TOSS.is_dir():
        return [{"unavailable": f"no {TOSS}"}]
    scene = load_scene(str(TOSS), scale=0.5)
    rays = foreground_rays(scene, outside_masks=True)
    b = scene.bounds.float()
    box = torch.stack([b[0] - BOX_GROWTH * (b[1] - b[0]), b[1] + BOX_GROWTH * (b[1] - b[0])])
    rows = []
    for choose, samples in (("votes", 32), ("votes", 128), ("cost", 128), ("cost", 256), ("votes_cost", 128), ("decisive", 128)):
        gen = torch.Generator().manual_seed(0)
        pts, _, _ = consistent_points_on_rays(rays, scene, box, CANDIDATES * 2000, gen, samples=samples, passes=2,
                                              choose=choose)
        near, far = _box_span(rays.origins, rays.dirs, box)  # the same rays again, to find where each meets the floor
        hit = far > near
        idx = torch.randint(int(hit.sum()), (CANDIDATES * 2000,), generator=torch.Generator().manual_seed(0))
        o, d = rays.origins[hit][idx], rays.dirs[hit][idx]
        centre = (o - o[:, 2:3] / d[:, 2:3] * d)[:, :2].norm(dim=1) < 1
        z = pts[:, 2].abs()
        rows.append({"choose": choose, "samples": samples, **{f"abs_z_p{q}": float(z.quantile(q / 100)) for q in (50, 75, 90)},
                     **{f"centre_abs_z_p{q}": float(z[centre].quantile(q / 100)) for q in (50, 75, 90)},
                     **{f"far_abs_z_p{q}": float(z[~centre].quantile(q / 100)) for q in (50, 75, 90)}})
    return rows


def main():
    torch.set_num_threads(2)
    t0 = time.time()
    result = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                       "torch": torch.__version__},
              "synthetic_frame0_distance_voxels": synthetic_rows(), "toss_background_abs_z": toss_rows()}
    result["meta"]["seconds"] = time.time() - t0
    print("synthetic default, frame 0: distance to the true surfaces (fine voxels)")
    for r in result["synthetic_frame0_distance_voxels"]:
        print(f"  {r['points']:38s} median {r['median']:.2f}  within 2 {r['within_2']:.0%}  p99 {r['p99']:.1f}")
    print("MuJoCo toss background points, |z| (floor at z = 0)")
    for r in result["toss_background_abs_z"]:
        print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    out = Path(__file__).parent / "results" / "fourk4d_points.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
