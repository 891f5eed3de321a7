"""Renderers: Gaussian splatting (`rasterize`) with cuda / cpu / torch backends."""

from splat4d.render.gaussians import BACKENDS, RenderOutput, rasterize

__all__ = ["BACKENDS", "RenderOutput", "rasterize"]
