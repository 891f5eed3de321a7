"""Quality per budget: static and deformable with default settings, trained with 1000 / 3000 / 6000
iterations (one fit each) on the shared D-NeRF scene (200x200), the fast-motion synthetic preset and the
MuJoCo 12-camera capture; prints a table, merges rows into benchmarks/results/budget.json and draws
docs/images/budget.png (see splat4d/bench/budget.py).

Usage: python benchmarks/budget.py [--scenes ...] [--methods ...] [--budgets ...] [--out DIR]
                                   [--chart PNG] [--resume] [--note TEXT]
"""

import sys

from splat4d.bench import main
from splat4d.bench.budget import BudgetBench, run

if __name__ == "__main__":
    sys.exit(main(BudgetBench, run, "benchmarks/budget.py", sys.argv[1:]))
