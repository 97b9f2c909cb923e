"""Reading the text files people edit (prompt, experiment and data files) as UTF-8, or one sentence saying where it is not."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Callable, Optional

FileError = Callable[[str | Path, Optional[int], str], Exception]


def read_utf8(path: str | Path, error: FileError) -> str:
    """The file's text with LF line endings, as `Path.read_text` gives it; a byte that is not UTF-8 raises
    `error(path, line, message)` naming the byte and its column, and so does a path that is a folder, a
    symlink that loops or a file we may not read. A missing file raises `FileNotFoundError`, for the caller to word."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(path, None, unreadable(exc)) from None
    return decode_utf8(data, path, error).replace("\r\n", "\n").replace("\r", "\n")


def decode_utf8(data: bytes, path: str | Path, error: FileError, *, advice: str = "save the file as UTF-8") -> str:
    """`data` as UTF-8 text, unchanged; a byte that is not UTF-8 raises `error(path, line, message)` naming it and
    its column, then `advice`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - line_start + 1
        raise error(path, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); {advice}") from None


def unreadable(exc: OSError) -> str:
    """Why a file could not be opened, and what to do, for the message after `path: `."""
    if isinstance(exc, IsADirectoryError):
        return "a folder where a file should be; remove or rename the folder"
    if isinstance(exc, PermissionError):
        return "permission denied reading it; make it readable (chmod u+r) or run as a user who may read it"
    if exc.errno == errno.ELOOP:
        return "a symlink that loops back on itself; point it at a real file or remove it"
    return f"cannot be read ({exc.strerror or exc}); check the file and the disk"
