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
_CORNERS = "╭╮╰╯┏┓┗┛"
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
    """The message of tyro's error box (wrapped lines joined), as one line ending with a pointer to
    --help. tyro draws the box with box-drawing characters, or with plain dashes when the stream cannot
    take them (title, rule, message, rule, ...). Falls back to argparse's `prog: error: ...` line."""
    lines = [ln.strip() for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    sections: list[list[str]] = [[]]
    for i, s in enumerate(lines):
        inner = s.strip(_SIDES).strip()
        if s[:1] in _CORNERS or not inner or set(inner) <= _RULES:  # a border (its title) or a rule
            sections.append([])
        elif i == 0 and len(lines) > 1 and set(lines[1].strip(_SIDES).strip()) <= _RULES:
            sections.append([])  # a plain-text box's title line
        else:
            sections[-1].append(inner)
    body = [sec for sec in sections if sec]
    message = " ".join(body[0]) if body else ""
    found = re.findall(r"error: (.+)", text)
    if found or not message:
        message = found[-1] if found else (lines[-1] if lines else "invalid arguments")
    return f"{_plain(message)} (see {prog} --help)"


def _plain(message: str) -> str:
    """Python's conversion errors said as what the flag needs: `--iters must be an integer, got 'abc'`."""
    m = re.fullmatch(r"Error parsing (\S+): (?:invalid literal for (int)\(\) with base 10|could not convert "
                     r"string to (float)): (.*)", message)
    if m:
        return f"{m[1]} must be {_NOT_A[m[2] or m[3]]}, got {m[4]}"
    return message
