"""Files written so that a reader never sees half of one."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    The temporary file is named after the process and thread (each writes one at a time), so
    no random name has to be found; a leftover of a killed writer is overwritten by the next
    writer with its ids. The folder is created only when the first open finds it missing:
    publishing writes thousands of files into a handful of folders.
    """
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)  # noqa: PTH105 - atomic on POSIX; no Path built per file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
