"""4K4D vs deformable on one multi-view scene: held-out PSNR (trained and baked), ms per frame of the
training-time renderer, the baked renderer and deformable, baked MB per frame; prints a table and writes
benchmarks/results/fourk4d_<scene>.json (see splat4d/bench/fourk4d.py).

Usage: python benchmarks/fourk4d.py [--scene synthetic:default|toss] [--iters 3000]
"""

import sys

from splat4d.bench import main
from splat4d.bench.fourk4d import FourK4DBench, run

if __name__ == "__main__":
    sys.exit(main(FourK4DBench, run, "benchmarks/fourk4d.py", sys.argv[1:]))
