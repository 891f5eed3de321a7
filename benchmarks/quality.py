"""Deformable vs static on one scene with the same iteration budget; prints a table and writes
benchmarks/results/quality_<scene>.json (see splat4d/bench/quality.py).

Usage: python benchmarks/quality.py [--scene synthetic:default|synthetic:fast|dnerf] [--iters N] [--max-init-points N]
"""

import sys

import tyro

from splat4d.bench.quality import QualityBench, run

if __name__ == "__main__":
    run(tyro.cli(QualityBench))
    sys.exit(0)
