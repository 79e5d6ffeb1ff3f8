"""Atomic file writes: a temporary file in the target's folder, then renamed over it.

`write_atomic(path, write)` writes ``path`` through ``write(binary file)`` (or from bytes).
A reader sees the old file or the whole new one, never a part; on any failure (also
KeyboardInterrupt) the temporary file is removed and ``path`` is untouched. The new file gets
the permissions ``open()`` would give it (the temporary file is created 0600).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of written files: what ``open()`` would give.
FILE_MODE = 0o666 & ~_umask()


def write_atomic(path, write: Callable | bytes, *, fsync: bool = False, suffix: str = ".tmp") -> Path:
    """Write ``path`` atomically (see the module docstring).

    Args:
      path: the target file (its folder is created).
      write: ``write(binary file)``, or the bytes to write.
      fsync: flush the file to disk before the rename (durability across a crash).
      suffix: the temporary file's suffix (``.<name>.<random><suffix>`` in the same folder).
    Returns:
      ``path`` as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(write, (bytes, bytearray)):
                fh.write(write)
            else:
                write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
