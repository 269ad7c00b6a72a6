"""Every output file's one owner: the checks before any work, and the write, which never harms what it replaces.

- A regular file (or none yet) is written to a temporary file in its own directory, fsynced, then
  renamed into place. Whatever goes wrong before the rename (an error, a full disk, Ctrl-C), the
  temporary file is removed and the target is untouched. Without `force`, an existing file is refused.
- A symlink is followed: the file it points to is written so, in that file's directory; the link stays.
- A character device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe) is written into, as `cp` and
  shells do. Nothing is replaced, so it needs no `force`. A block device, a socket or a directory is
  refused with one line.
- An output that is one of the command's inputs is refused, whether named as it, through a symlink or
  as a hard link: the input is never modified.
"""
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .errors import UserError

PARTIAL = ".partial"  # the temporary file's suffix


@contextmanager
def atomic_output(target: Path, force: bool, *, source: Path | None = None) -> Iterator[Path]:
    """Yield a path to write the whole output at; when the block ends normally, it becomes `target`'s
    content. `source`, an input, is never overwritten. For a device or a FIFO the path is a temporary
    file elsewhere (the writer may read its output back), copied into the target at the end."""
    target = Path(target)
    if _check(target, force, source):
        with _reported(target), open(os.open(target, os.O_WRONLY), "wb") as device, _staging(target) as path:
            yield path
            with open(path, "rb") as content:
                shutil.copyfileobj(content, device)
    else:
        with _atomic(target, force) as path:
            yield path


@contextmanager
def output_stream(target: Path, force: bool, encoding: str = "utf-8") -> Iterator[TextIO]:
    """The same rules for a writer of text; a device or a FIFO gets the text as it is written."""
    target = Path(target)
    if _check(target, force, source=None):
        with _reported(target), open(os.open(target, os.O_WRONLY), "w", encoding=encoding) as stream:
            yield stream
    else:
        with _atomic(target, force) as path, open(path, "w", encoding=encoding) as stream:
            yield stream


def _exists(target: Path) -> UserError:
    return UserError(f"output exists: {target} (use --force to replace it)")


def _check(target: Path, force: bool, source: Path | None) -> bool:
    """Refuse, before any work, an output that cannot or may not be written; True for a device or a
    FIFO, which is written into."""
    never_an_input(target, [source] if source is not None else [])
    try:
        mode = os.stat(target).st_mode  # through any symlinks
    except (FileNotFoundError, NotADirectoryError):
        directory = Path(os.path.realpath(target)).parent
        if not directory.exists():
            raise UserError(f"output directory does not exist: {directory}") from None
        if not directory.is_dir():
            raise UserError(f"output directory is not a directory: {directory}") from None
        return False
    except OSError as error:
        raise UserError(f"cannot write {target}: {error.strerror}") from None
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return True
    if stat.S_ISDIR(mode):
        raise UserError(f"output is a directory: {target}")
    if stat.S_ISBLK(mode):
        raise UserError(f"output is a block device: {target} (write to a file, not to a disk)")
    if stat.S_ISSOCK(mode):
        raise UserError(f"output is a socket: {target} (write to a file, a FIFO or a device)")
    if not force:
        raise _exists(target)
    return False


def never_an_input(target: Path, inputs: Iterable[Path]) -> None:
    """Refuse, before any work, an output that is the same regular file (device and inode) as an input.
    A terminal or a FIFO may be both (`-` in, `/dev/stdout` out): writing into it replaces nothing."""
    try:
        written = os.stat(target)  # through any symlinks
    except OSError:  # not there yet, so no input is it
        return
    if not stat.S_ISREG(written.st_mode):
        return
    for source in inputs:
        try:
            read = os.stat(source)
        except OSError:  # a missing input is reported by its reader
            continue
        if (read.st_dev, read.st_ino) == (written.st_dev, written.st_ino):
            raise UserError(f"the output would overwrite the input {source}: the input is never modified")


@contextmanager
def _atomic(target: Path, force: bool) -> Iterator[Path]:
    real = Path(os.path.realpath(target))  # a symlink's file is written in its own directory
    directory = real.parent
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{real.name}.", suffix=PARTIAL)
    except OSError as error:
        raise UserError(f"cannot write to the output directory {directory}: {error.strerror}") from None
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; an output is as readable as any file
        if force:
            os.replace(temporary, real)
        else:
            try:  # link refuses an existing target, so a file that appeared meanwhile is not clobbered
                os.link(temporary, real)
            except FileExistsError:
                raise _exists(target) from None
            except OSError:  # a file system without hard links: rename, having checked just before
                if real.exists():
                    raise _exists(target) from None
                os.replace(temporary, real)
            else:
                os.unlink(temporary)
        _fsync_directory(directory)
    except BaseException as error:  # Ctrl-C included: nothing partial stays behind
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(f"cannot write {target}: {error.strerror or error}") from None
        raise


@contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary file in the system's temporary directory, removed whatever happens."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL)
    except OSError as error:
        raise UserError(f"cannot write a temporary file for {target}: {error.strerror}") from None
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextmanager
def _reported(target: Path) -> Iterator[None]:
    """A failed open or write of a device or a FIFO (a reader gone: a broken pipe) is one line."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot write {target}: {error.strerror or error}") from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some systems cannot open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
