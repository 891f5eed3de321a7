"""`python -m splat4d ...` is the `splat4d` command (and `torchrun -m splat4d fit ...` trains data-parallel)."""

import sys

from splat4d.cli import main

if __name__ == "__main__":
    sys.exit(main())
