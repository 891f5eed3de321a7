"""ADC-GS vs deformable on one scene: size of the .s4d, PSNR, coding efficiency, deformation and raster time
per frame, over lambda_e in {1e-2, 1e-3, 1e-4}; prints a table and writes benchmarks/results/adcgs_<scene>.json
(see splat4d/bench/adcgs.py).

Usage: python benchmarks/adcgs.py [--scene synthetic:default|dnerf|toss] [--iters 3000] [--lambdas ...] [--seeds 0 1 ...]
(several seeds: mean over them, adcgs_<scene>_seeds<...>.json)
"""

import sys

from splat4d.bench import main
from splat4d.bench.adcgs import ADCGSBench, run

if __name__ == "__main__":
    sys.exit(main(ADCGSBench, run, "benchmarks/adcgs.py", sys.argv[1:]))
