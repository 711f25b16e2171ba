"""Files a run depends on, written whole or not at all.

Each write goes to a temporary file in the target's folder, is flushed and fsynced, and then
renamed over the target with ``os.replace`` (atomic on POSIX and Windows), so a kill or a full
disk at any moment leaves either the old file or the new one, never a torn one. A write that
fails raises ``WriteError``, which names the file and says that its previous version is intact.
A kill (SIGKILL) can leave a temporary file behind: ``remove_leftovers`` clears those.
"""

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from typing import IO, Any, Iterator, List, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]
TEMP_SUFFIX = ".partial"


class WriteError(OSError):
    """A file could not be written; its previous version, if any, is unchanged. ``errno`` is the
    cause's; the message is the whole sentence."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.errno = code


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp makes it 0o600)


def _fsync_folder(folder: str) -> None:
    # the rename itself reaches the disk only with its folder's entry; not every OS can open a folder
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _os_error(err: BaseException):
    """The OSError behind ``err``: itself, or one it was raised while handling (torch.save's
    clean-up after a failed write raises a RuntimeError of its own)."""
    while err is not None and not isinstance(err, OSError):
        err = err.__context__
    return err


def _write_error(path: str, err: OSError) -> WriteError:
    before = "its previous version is intact" if os.path.exists(path) else "no earlier version existed"
    reason = f"[Errno {err.errno}] {err.strerror}" if err.strerror else str(err)
    return WriteError(err.errno, f"cannot write {path!r} ({reason}); {before}")


class _WholeWrites:
    """A binary file whose ``write`` writes all its data or raises. A disk that takes part of a
    write (a file at its size limit) would else go unnoticed until torch.save checks its position."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            written = self.raw.write(view[done:])
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
        return done

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, replacing ``path`` only when the block ends without error.

    An OSError (disk full, permissions) becomes a ``WriteError`` naming ``path``; any error or
    interruption removes the temporary file and leaves ``path`` as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    temp = None
    try:
        fd, temp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder)
        os.chmod(temp, _FILE_MODE)
        with os.fdopen(fd, mode, **({"buffering": 0} if "b" in mode else {})) as f:
            yield _WholeWrites(f) if "b" in mode else f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        temp = None
    except Exception as err:
        cause = _os_error(err)
        if cause is None:
            raise
        raise _write_error(path, cause) from err
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.remove(temp)
    _fsync_folder(folder)


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)``, atomically (see ``atomic_open``)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_open``)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_link(source: PathLike, path: PathLike) -> None:
    """Make ``path`` a copy of ``source`` atomically: a hard link where the file system has them
    (no second copy on disk, instant), else a copied file. Replacing ``source`` later leaves
    ``path`` as it is."""
    source, path = os.fspath(source), os.fspath(path)
    if os.path.exists(path) and os.path.samefile(source, path):
        return  # already (and a rename onto the same file would do nothing, leaving the temporary)
    folder = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(folder, f"{_temp_prefix(path)}link{os.getpid()}{TEMP_SUFFIX}")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        os.link(source, temp)
    except OSError:  # no hard links here (another device, FAT, some network file systems)
        with open(source, "rb") as src, atomic_open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    try:
        os.replace(temp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise _write_error(path, err) from err
    _fsync_folder(folder)


def leftovers(folder: PathLike) -> List[str]:
    """Temporary files of writes that a kill interrupted in ``folder``."""
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), f".*{TEMP_SUFFIX}")))


def remove_leftovers(folder: PathLike) -> List[str]:
    """Delete ``leftovers(folder)`` (call it only where no other process is writing); their paths."""
    removed = []
    for path in leftovers(folder):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed
