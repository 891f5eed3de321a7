"""Run `splat4d demo` and keep its summary: benchmarks/results/demo.json is the demo's own summary.json
(PSNR, time, machine), the file the README's demo numbers come from.

Usage: python benchmarks/demo.py [--out outputs/demo]
"""

import shutil
import sys
from pathlib import Path

from splat4d.demo import run_demo

if __name__ == "__main__":
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else Path("outputs/demo")
    code = run_demo(out)
    if code == 0:
        dst = Path(__file__).resolve().parent / "results" / "demo.json"
        shutil.copyfile(out / "summary.json", dst)
        print(f"copied {out / 'summary.json'} to {dst}")
    sys.exit(code)
