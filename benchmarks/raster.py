"""CPU rasterizer vs dense torch reference. Usage: python benchmarks/raster.py [--gaussians 1000 10000 ...]"""

import sys

import tyro

from splat4d.bench.raster import RasterBenchConfig, main

if __name__ == "__main__":
    sys.exit(main(tyro.cli(RasterBenchConfig)))
