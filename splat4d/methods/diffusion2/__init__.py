"""Diffusion²: a V×F image matrix from a video prior and a multi-view prior (score composition with
variance-reducing sampling), then a 4D reconstruction of it with `deformable`."""

from splat4d.methods.diffusion2.distributed import sample_image_matrix_distributed
from splat4d.methods.diffusion2.sampler import edm_sigmas, sample_image_matrix

__all__ = ["edm_sigmas", "sample_image_matrix", "sample_image_matrix_distributed"]
