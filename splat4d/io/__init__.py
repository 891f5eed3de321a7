"""File formats: images, mp4 video, PLY (3DGS Gaussians and point clouds); every write is atomic."""

from splat4d.io.images import image_grid, load_image, save_image, side_by_side
from splat4d.io.ply import (
    load_gaussians_ply,
    load_points_ply,
    save_gaussians_ply,
    save_points_ply,
)
from splat4d.io.video import read_video, write_video

__all__ = [
    "image_grid",
    "load_gaussians_ply",
    "load_image",
    "load_points_ply",
    "read_video",
    "save_gaussians_ply",
    "save_image",
    "save_points_ply",
    "side_by_side",
    "write_video",
]
