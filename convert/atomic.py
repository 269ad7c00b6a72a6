"""Writing a file atomically: a temporary file in the target directory, fsynced, then renamed into place.

Whatever goes wrong before the rename (an error, a full disk, Ctrl-C), the temporary file is removed
and the target is untouched, so nothing partial is ever left behind.
"""
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


@contextmanager
def atomic_output(target: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path next to `target`; when the block ends normally, put it in place."""
    directory = target.parent
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".partial")
    except OSError as error:
        raise UserError(f"cannot write to the output directory {directory}: {error.strerror}") from None
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any
        if force:
            os.replace(temporary, target)
        else:
            try:  # link refuses an existing target, so a file that appeared meanwhile is not clobbered
                os.link(temporary, target)
            except FileExistsError:
                raise UserError(f"output exists: {target} (use --force to replace it)") from None
            except OSError:  # a file system without hard links: rename, having checked just before
                if target.exists():
                    raise UserError(f"output exists: {target} (use --force to replace it)") from None
                os.replace(temporary, target)
            else:
                os.unlink(temporary)
        _fsync_directory(directory)
    except BaseException as error:  # Ctrl-C included: nothing partial stays behind
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(f"cannot write {target}: {error.strerror or error}") from None
        raise


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
