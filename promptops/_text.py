"""Reading the text files people edit (prompt, experiment and data files) as UTF-8, or one sentence saying where it is not."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

FileError = Callable[[str | Path, Optional[int], str], Exception]


def read_utf8(path: str | Path, error: FileError) -> str:
    """The file's text with LF line endings, as `Path.read_text` gives it; a byte that is not UTF-8 raises
    `error(path, line, message)` naming the byte and its column."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - line_start + 1
        raise error(path, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); save the file as UTF-8") from None
