"""Find the first byte of a text file that is not UTF-8, with its line and CSV column, in bounded memory.

The file is scanned in blocks; a multi-byte sequence cut by a block boundary is carried over to
the next block, so only real encoding errors are reported (RFC 3629 defines valid UTF-8).
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from participant_node.data.errors import DataContractError

__all__ = ["first_utf8_error"]

_BLOCK = 8 << 20
_MAX_SEQUENCE = 4  # the longest UTF-8 sequence (RFC 3629 §3)


def first_utf8_error(path: Path, *, block_size: int = _BLOCK) -> DataContractError | None:
    """The error naming file, line and column of the first invalid byte, or None if all is UTF-8."""
    offset, lines, carry, tail = 0, 0, b"", b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(block_size)
            data = carry + block
            base = offset - len(carry)
            try:
                data.decode("utf-8")
                carry = b""
                good = data
            except UnicodeDecodeError as err:
                truncated = err.reason == "unexpected end of data" and len(data) - err.start < _MAX_SEQUENCE
                if not truncated or not block:
                    prefix = (tail + data[: err.start]).rsplit(b"\n", 1)[-1]
                    line = lines + data.count(b"\n", 0, err.start) + 1
                    return _error(path, data[err.start], base + err.start, line, prefix)
                good, carry = data[: err.start], data[err.start :]
            if not block:
                return None
            lines += good.count(b"\n")
            newline = good.rfind(b"\n")
            tail = good[newline + 1 :] if newline >= 0 else (tail + good)[-(1 << 20) :]

            offset += len(block)


def _error(path: Path, byte: int, position: int, line: int, prefix: bytes) -> DataContractError:
    field_index = prefix.count(b",")
    column = _header_name(path, field_index) if line > 1 else f"#{field_index + 1}"
    return DataContractError(
        f"not valid UTF-8 (byte 0x{byte:02x} at offset {position}); re-export the file as UTF-8",
        file=path.name,
        row=f"line {line}",
        column=column,
    )


def _header_name(path: Path, index: int) -> str:
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    text = codecs.decode(first, "utf-8", errors="replace").lstrip("\ufeff")
    names = next(csv.reader(io.StringIO(text)), [])
    return names[index].strip() if index < len(names) else f"#{index + 1}"
