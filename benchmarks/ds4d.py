"""DS4D vs deformable on one multi-view scene (one input camera, pseudo cameras, the rest held out):
held-out PSNR, SSIM and PSNR inside the moving object's mask for deformable and Table 2's rows A-H;
prints a table and writes benchmarks/results/ds4d_<scene>.json (see splat4d/bench/ds4d.py).

Usage: python benchmarks/ds4d.py [--scene synthetic:deforming|toss] [--iters 2000] [--rows deformable H]
"""

import sys

from splat4d.bench import main
from splat4d.bench.ds4d import DS4DBench, run

if __name__ == "__main__":
    sys.exit(main(DS4DBench, run, "benchmarks/ds4d.py", sys.argv[1:]))
