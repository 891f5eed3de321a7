"""Diffusion² stage 1 on tiny priors: batched composition vs one by one (speed, peak memory), the rollback's
overhead, and 2 gloo ranks vs one process; prints a table and writes benchmarks/results/diffusion2.json (see
splat4d/bench/diffusion2.py).

Usage: python benchmarks/diffusion2.py [--views 21 --frames 25 --size 16 --steps 4 --rollback 2]
"""

import sys

from splat4d.bench import main
from splat4d.bench.diffusion2 import Diffusion2Bench, run

if __name__ == "__main__":
    sys.exit(main(Diffusion2Bench, run, "benchmarks/diffusion2.py", sys.argv[1:]))
