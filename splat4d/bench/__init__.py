"""Benchmarks shared by `benchmarks/*.py` and `splat4d bench`."""


def main(config_class, run, prog: str, argv: list[str]) -> int:
    """Entry of a `benchmarks/*.py` script driven by a config dataclass: parse `argv` into `config_class`,
    call `run` on it; a Splat4DError is one line on stderr and exit code 2."""
    import sys

    from splat4d.cli_parse import parse
    from splat4d.errors import Splat4DError

    try:
        run(parse(config_class, argv, prog=prog, description=config_class.__doc__))
    except Splat4DError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
