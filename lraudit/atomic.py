"""Atomic file replacement, shared by fixes, the cache and trajectory files.

Imports nothing of libcst or torch: both halves use it (DESIGN.md: the halves share the catalogue and
small pure helpers like this one).
"""
from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable, Optional


def replace_atomically(target: str, write: Callable[[BinaryIO], None], mode: Optional[int] = None) -> None:
    """Call ``write(fh)`` on a binary temporary file beside ``target``, then rename it over ``target``.

    Readers see the old content or the new one, never half of it; a failure (also KeyboardInterrupt)
    leaves ``target`` as it was and removes the temporary file. ``mode`` sets the permission bits, else
    the temporary file's own (0600) stay.
    """
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".", prefix=".lraudit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
