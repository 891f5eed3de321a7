"""Compression building blocks: the `.s4d` bitstream container (`container`), entropy coding of integer
symbols under per-symbol quantised Gaussians whose bit cost training can estimate with the same formula
(`entropy`), and point positions coded with Draco (`positions`).

constriction and DracoPy are the optional `codec` extra (`pip install 'splat4d[codec]'`); they are imported
only when coding, and their absence is a one-line `ConfigError`."""
