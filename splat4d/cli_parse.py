"""Parse a command's flags with tyro, turning tyro's multi-line error boxes into one `ConfigError` line.

tyro reports a bad flag (`--iters abc`, an unknown option, a missing value) by drawing a box on stderr
and raising SystemExit(2). `parse` captures that box and keeps its message, so the CLI prints one
`splat4d: error: ...` line like every other bad value; `--help` still prints and exits 0.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from typing import TypeVar

import tyro

from splat4d.errors import ConfigError

T = TypeVar("T")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SIDES = "│┃|"
_RULES = set("─━-═ ")
_NOT_A = {"int": "an integer", "float": "a number"}


def parse(cls: type[T], args: list[str], prog: str, description: str | None = None, default: T | None = None) -> T:
    """`tyro.cli(cls, args=...)`, then `validate()` when the class has one. Bad flags raise ConfigError."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            kwargs = {"default": default} if default is not None else {}
            out = tyro.cli(cls, args=args, prog=prog, description=description, **kwargs)
    except SystemExit as e:
        if e.code in (0, None):  # --help
            raise
        raise ConfigError(condense(err.getvalue(), prog)) from None
    _pass_through(err.getvalue())
    if hasattr(out, "validate"):
        out.validate()
    return out


def _pass_through(text: str) -> None:
    """Warnings printed while parsing successfully still reach the user."""
    if text:
        sys.stderr.write(text)


def condense(text: str, prog: str) -> str:
    """The message inside tyro's error box (wrapped lines joined), as one line ending with a pointer to
    --help. Falls back to argparse's `prog: error: ...` line, then to the last line printed."""
    text = _ANSI.sub("", text)
    body: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if s[:1] in "╭┏":  # the box's top border carries only the title
            continue
        if s[:1] in "╰┗":
            break
        if s[:1] not in _SIDES:
            continue
        inner = s.strip(_SIDES).strip()
        if not inner:
            continue
        if set(inner) <= _RULES:  # the rule before "For full helptext..."
            if body:
                break
            continue
        body.append(inner)
    message = " ".join(body)
    if not message:
        found = re.findall(r"error: (.+)", text)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        message = found[-1] if found else (lines[-1] if lines else "invalid arguments")
    message = _plain(message)
    return f"{message} (see {prog} --help)"


def _plain(message: str) -> str:
    """Python's conversion errors said as what the flag needs: `--iters must be an integer, got 'abc'`."""
    m = re.fullmatch(r"Error parsing (\S+): (?:invalid literal for (int)\(\) with base 10|could not convert "
                     r"string to (float)): (.*)", message)
    if m:
        return f"{m[1]} must be {_NOT_A[m[2] or m[3]]}, got {m[4]}"
    return message
