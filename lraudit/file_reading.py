"""One file's bytes and text, read defensively: the first stage of the static pipeline.

Hostile input is turned away here, each with a one-line message (an error) or a size note:
only regular files are read (a named pipe, a device or a socket would block or never end), never
past the ``max-file-size`` bound (notebooks, which carry their outputs, get
:data:`NOTEBOOK_SIZE_FACTOR` times it), and Python text is decoded per PEP 263 (coding cookie or BOM,
default UTF-8; NUL bytes or undecodable text are an error). :mod:`lraudit.engine` calls
:func:`read_source`; ``--add-noqa`` and fix writing (:mod:`lraudit.fix_apply`) read the same way.
"""
from __future__ import annotations

import io
import os
import stat
import tokenize
from dataclasses import dataclass
from typing import Optional, Union

from lraudit.cache import content_hash
from lraudit.discovery import SourceFile

#: Notebooks carry their outputs (plots, tables) in the same JSON: their bound is this many times
#: ``max-file-size``, and their code cells joined are held to ``max-file-size`` itself.
NOTEBOOK_SIZE_FACTOR = 32


class DecodeError(Exception):
    pass


@dataclass
class Decoded:
    text: str
    encoding: str


def decode_source(data: bytes) -> Decoded:
    """Text of a Python file per PEP 263 (coding cookie or BOM, default UTF-8)."""
    if b"\x00" in data:
        raise DecodeError("binary file (contains NUL bytes), not checked")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        message = getattr(exc, "msg", None) or str(exc)
        if "invalid or missing encoding declaration" not in message:
            raise DecodeError(f"cannot decode: {message}") from None
        encoding = "utf-8"  # not UTF-8 and no cookie: say where it breaks
    try:
        return Decoded(data.decode(encoding), encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DecodeError(f"cannot decode as {encoding}: invalid byte 0x{data[exc.start]:02x} on line {line}") from None
    except LookupError:
        raise DecodeError(f"unknown encoding {encoding!r} in coding cookie") from None


class Unread(str):
    """A file not read because of a bound (its size): a note, not an error."""


def describe_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} KB"


def read_source_bytes(path: str, max_size: int = 0):
    """The bytes of a regular file, or an error message (str) or a size note (:class:`Unread`).

    Only regular files are read: a named pipe, a device (``/dev/zero``) or a socket would block or
    never end. The file is opened without blocking and checked with ``fstat`` on the open
    descriptor (no race with a swap between the check and the read), and never read past the bound.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        return "is a directory"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return "is a directory"
        if not stat.S_ISREG(st.st_mode):
            kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "special")
            return f"not a regular file ({kind}), not read"
        if max_size and st.st_size > max_size:
            return Unread(f"not analysed: {describe_size(st.st_size)} is over the size bound of "
                          f"{describe_size(max_size)} (`max-file-size` in [tool.lraudit])")
        chunks = []
        remaining = (max_size + 1) if max_size else -1
        while remaining:
            chunk = os.read(fd, 1 << 20 if remaining < 0 else min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            if remaining > 0:
                remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if max_size and len(data) > max_size:  # grew while we read it
        return Unread(f"not analysed: over the size bound of {describe_size(max_size)} "
                      "(`max-file-size` in [tool.lraudit])")
    return data


@dataclass
class SourceText:
    """A file read and decoded: its text (notebooks: their JSON), the hash of the bytes read (a fix is
    written only over these very bytes), the encoding (None for notebooks) and the bytes themselves."""

    text: str
    digest: str
    encoding: Optional[str]
    data: bytes


def read_source(sf: SourceFile, max_size: int = 0) -> Union[SourceText, str]:
    """The file's :class:`SourceText`, or an error message (str), or an :class:`Unread` note."""
    bound = max_size * NOTEBOOK_SIZE_FACTOR if (sf.is_notebook and max_size) else max_size
    data = read_source_bytes(sf.path, bound)
    if isinstance(data, str):
        return data
    digest = content_hash(data)
    if sf.is_notebook:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return "cannot decode notebook as UTF-8"
        return SourceText(text, digest, None, data)
    try:
        decoded = decode_source(data)
    except DecodeError as exc:
        return str(exc)
    return SourceText(decoded.text, digest, decoded.encoding, data)
