"""The `.s4d` bitstream container: a header and named sections, each guarded by a CRC32.

Layout (little-endian)::

    header   magic b"S4D\\x89" | version u16 | sections u16 | crc32 of the 8 bytes before it (u32)
    section  name length u8 | name (UTF-8) | payload length u64 | payload | crc32 of all of it (u32)

Every byte is covered by a CRC (the header's own, or its section's), and the section count is in the
header, so a flipped byte, a truncated file, a missing section and trailing garbage are each detected
and reported as a `BitstreamError` that names the section. Files are written atomically.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from splat4d.errors import BitstreamError
from splat4d.io.atomic import atomic_path

MAGIC = b"S4D\x89"
"""First four bytes of every splat4d bitstream (the high byte catches 7-bit transfers, as PNG's does)."""
FORMAT_VERSION = 2
"""Container format version this code writes and the newest it reads (2: adcgs networks may hold int8 rows,
each tensor names its own precision; 1 is still read)."""
_HEADER = struct.Struct("<4sHH")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_NAME = 255


def pack(sections: dict[str, bytes], version: int = FORMAT_VERSION) -> bytes:
    """The bitstream holding `sections` (name -> payload, in this order)."""
    if len(sections) > 0xFFFF:
        raise ValueError("at most 65535 sections")
    head = _HEADER.pack(MAGIC, version, len(sections))
    parts = [head, _U32.pack(zlib.crc32(head))]
    for name, payload in sections.items():
        raw = name.encode("utf-8")
        if not 0 < len(raw) <= MAX_NAME:
            raise ValueError(f"section name must be 1-{MAX_NAME} UTF-8 bytes, got {name!r}")
        body = bytes([len(raw)]) + raw + _U64.pack(len(payload)) + bytes(payload)
        parts += [body, _U32.pack(zlib.crc32(body))]
    return b"".join(parts)


def unpack(data: bytes, source: str = "bitstream") -> tuple[int, dict[str, bytes]]:
    """(format version, sections) of a bitstream; BitstreamError naming what is wrong and where.
    `source` names the file in messages."""
    data = memoryview(bytes(data))
    n_head = _HEADER.size + _U32.size
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        raise BitstreamError(f"{source} is not a splat4d bitstream (wrong magic bytes)")
    if len(data) < n_head:
        raise BitstreamError(f"{source} is truncated in its header")
    magic, version, count = _HEADER.unpack_from(data, 0)
    if _U32.unpack_from(data, _HEADER.size)[0] != zlib.crc32(data[: _HEADER.size]):
        raise BitstreamError(f"{source} is corrupt: header CRC32 mismatch")
    if version > FORMAT_VERSION:
        raise BitstreamError(f"{source} has format version {version}, newer than this splat4d reads "
                             f"({FORMAT_VERSION}); upgrade splat4d")
    if version < 1:
        raise BitstreamError(f"{source} has an invalid format version {version}")
    pos, sections = n_head, {}
    for index in range(count):
        start = pos
        label = f"section {index + 1} of {count}"
        if pos + 1 > len(data):
            raise BitstreamError(f"{source} is truncated: {label} is missing")
        n = data[pos]
        pos += 1
        if pos + n + _U64.size > len(data):
            raise BitstreamError(f"{source} is truncated in {label}'s header")
        name_raw = bytes(data[pos : pos + n])
        name = name_raw.decode("utf-8", errors="replace")
        pos += n
        length = _U64.unpack_from(data, pos)[0]
        pos += _U64.size
        end = pos + length
        if end + _U32.size > len(data) or length > len(data):
            raise BitstreamError(f"{source} is truncated in section {name!r} ({label})")
        crc = _U32.unpack_from(data, end)[0]
        if crc != zlib.crc32(data[start:end]):
            raise BitstreamError(f"{source} is corrupt in section {name!r} ({label}): CRC32 mismatch")
        if name in sections:
            raise BitstreamError(f"{source} holds section {name!r} twice")
        sections[name] = bytes(data[pos:end])
        pos = end + _U32.size
    if pos != len(data):
        raise BitstreamError(f"{source} has {len(data) - pos} unexpected bytes after its last section")
    return version, sections


def write_bitstream(path: str | os.PathLike, sections: dict[str, bytes]) -> Path:
    """Write `sections` to `path` atomically (a temporary file renamed into place); returns the path."""
    data = pack(sections)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_bitstream(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Sections of the bitstream at `path`; BitstreamError when it is unreadable, corrupt, of a newer
    version, or lacks a `required` section."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BitstreamError(f"cannot read bitstream {path}: {e.strerror or e}") from None
    _, sections = unpack(data, str(path))
    for name in required:
        if name not in sections:
            raise BitstreamError(f"{path} lacks section {name!r}")
    return sections


def is_bitstream(path: str | os.PathLike) -> bool:
    """True when `path` is a file that starts with the magic bytes (so commands can tell a `.s4d` from a
    run folder or a dataset)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
