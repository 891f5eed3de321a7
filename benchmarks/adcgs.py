"""ADC-GS vs deformable on one scene: size of the .s4d, PSNR, coding efficiency, deformation and raster time
per frame, over lambda_e in {1e-2, 1e-3, 1e-4}; prints a table and writes benchmarks/results/adcgs_<scene>.json
(see splat4d/bench/adcgs.py).

Usage: python benchmarks/adcgs.py [--scene synthetic:default|dnerf|toss] [--iters 3000] [--lambdas ...]
"""

import sys

from splat4d.bench.adcgs import ADCGSBench, run
from splat4d.cli_parse import parse
from splat4d.errors import Splat4DError

if __name__ == "__main__":
    try:
        run(parse(ADCGSBench, sys.argv[1:], prog="benchmarks/adcgs.py", description=ADCGSBench.__doc__))
    except Splat4DError as e:
        print(f"adcgs: error: {e}", file=sys.stderr)
        sys.exit(2)
