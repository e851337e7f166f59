"""Crash-safe private files: temp file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    _before_rename: Callable[[Path], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    The temporary file is created with ``mode`` from the start (never
    world-readable, even briefly), written, fsynced, renamed over ``path``, and the
    directory is fsynced. ``_before_rename`` is a test hook that runs just before
    the rename, to simulate a crash there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; widen never
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if _before_rename is not None:
            _before_rename(tmp)
        os.replace(tmp, path)
    except BaseException:
        # Whatever went wrong, the destination is untouched; drop the partial file.
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_rename(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` (atomic on POSIX) and fsync the directory."""
    os.replace(src, dst)
    dir_fd = os.open(Path(dst).parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
