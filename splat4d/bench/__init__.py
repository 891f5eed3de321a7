"""Benchmarks shared by `benchmarks/*.py` and `splat4d bench`."""
