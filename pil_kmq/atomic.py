"""Writing an output file all or nothing: the one mechanism behind the CLI, batch conversion
and stream.encode.

A regular file is written to an unnamed file in its directory (Linux's O_TMPFILE), linked
into place only once complete, so no failure, interrupt or SIGKILL leaves a partial or
stray file; where O_TMPFILE is missing, a hidden temporary named `.NAME.kmq-partial-XXXX`
beside it, removed on any failure. FIFOs, devices and sockets (`/dev/stdout`, `/dev/null`,
a pipe) are written through, never replaced. An input is never replaced by its own output
unless the caller says so, and `overwrite=False` is atomic: of two writers racing for one
name, one writes it and the other gets FileExistsError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

PARTIAL_MARK = ".kmq-partial-"
# errno values that mean "this filesystem or system has no O_TMPFILE".
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT}
# errno values of link(2) on a filesystem without hard links.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}
_PROC_FD = "/proc/self/fd"


class SameFileError(ValueError):
    """The output is one of the inputs: writing it would destroy the input."""


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], *, overwrite: bool = True, inputs: Iterable[str | os.PathLike[str]] = ()) -> Iterator[IO[bytes]]:
    """A file to write target's new content to, put in place only once the block completes,
    with target's permissions (a new file gets 0o666 less the umask). target may be a symlink
    (the file it points to is written, the link kept). FileExistsError if target exists and
    overwrite is False; SameFileError if target is one of `inputs`."""
    path = Path(target)
    existing = _stat(path)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with open(path, "wb") as through:  # a FIFO, device or socket: written through, never replaced
            yield through
        return
    if existing is not None:
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "file exists", str(target))
        for source in inputs:
            source_stat = _stat(Path(source))
            if source_stat is not None and (source_stat.st_dev, source_stat.st_ino) == (existing.st_dev, existing.st_ino):
                raise SameFileError(f"{target} is the input {source}: writing it would destroy the input")
    real = Path(os.path.realpath(path))
    mode = existing.st_mode & 0o7777 if existing is not None else 0o666 & ~_umask()
    handle, name = open_partial(real.parent, real.name)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
            _put_in_place(handle, name, real, overwrite)
    except BaseException:
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)
        raise


def write_atomic(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = True, inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Write data to target through atomic_output."""
    with atomic_output(target, overwrite=overwrite, inputs=inputs) as handle:
        handle.write(data)


def open_partial(directory: Path, name: str) -> tuple[IO[bytes], str | None]:
    """An open file for the new content in `directory`: unnamed (O_TMPFILE; name None), else a
    hidden temporary whose name is returned."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and os.path.isdir(_PROC_FD):  # linking the file into place goes through /proc
        try:
            fd = os.open(directory, flag | os.O_WRONLY, 0o600)
        except OSError as error:
            if error.errno not in _NO_TMPFILE:
                raise
        else:
            return os.fdopen(fd, "wb"), None
    # delete=False because it is renamed or linked into place, not deleted.
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{_short(name)}{PARTIAL_MARK}", delete=False)  # noqa: SIM115
    return handle, handle.name  # type: ignore[return-value]


def _put_in_place(handle: IO[bytes], name: str | None, real: Path, overwrite: bool) -> None:
    if name is None:  # an O_TMPFILE file: give it a name by linking /proc/self/fd/N
        if not overwrite:
            _link_unnamed(handle, real)  # EEXIST if another writer got there first
            return
        # No system call links over an existing name: link under a fresh one, then rename.
        for _ in range(100):
            temporary = real.with_name(f".{_short(real.name)}{PARTIAL_MARK}{os.urandom(6).hex()}")
            try:
                _link_unnamed(handle, temporary)
            except FileExistsError:
                continue
            try:
                os.replace(temporary, real)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            return
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(real))
    if overwrite:
        os.replace(name, real)
        return
    try:
        os.link(name, real)  # no-clobber: EEXIST if the name was taken meanwhile
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        # No hard links here (FAT, exFAT...): take the name with O_EXCL, then rename over it.
        os.close(os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(name, real)
        return
    os.unlink(name)


def _short(name: str) -> str:
    """A file's name as part of a temporary's: cut so that the temporary's name still fits
    NAME_MAX (255 bytes) with the mark and random suffix added."""
    encoded = name.encode("utf-8", "surrogateescape")
    return encoded[:200].decode("utf-8", "ignore") if len(encoded) > 200 else name


def _link_unnamed(handle: IO[bytes], path: Path) -> None:
    """Give an O_TMPFILE file a name. linkat(2) must follow /proc/self/fd/N to the file, and
    os.link asks linkat to follow only when given a directory descriptor."""
    proc = os.open(_PROC_FD, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(handle.fileno()), path, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _umask() -> int:
    """The process's umask, read without setting it where the system allows (setting it is not
    thread-safe: another thread's files would be created meanwhile with the wrong mode)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask
