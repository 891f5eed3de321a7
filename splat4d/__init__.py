"""splat4d: dynamic 3D (4D) Gaussian reconstruction, generation, compression and rendering."""

from splat4d.cameras import Cameras

__version__ = "0.1.0"
__all__ = ["Cameras", "__version__"]
