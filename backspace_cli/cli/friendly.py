"""How every command reports a problem the user can fix: one line on stderr, a non-zero exit, no traceback."""
import functools
import os
import sys
from contextlib import nullcontext

import click

from backspace_convert.errors import UserError

from .signals import INTERRUPTED, exit_interrupted, sigterm_interrupts


def friendly_errors(interrupted: str = INTERRUPTED, *, writes_files: bool = False):
    """UserError and OSError become one line and exit status 1; Ctrl-C prints `interrupted`, exits 130; a
    reader that closes the pipe early (`| head`) ends the command quietly with 141, as SIGPIPE ends cat.
    A command that `writes_files` takes SIGTERM as Ctrl-C, so that no partial output stays behind."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                with sigterm_interrupts() if writes_files else nullcontext():
                    return command(*args, **kwargs)
            except BrokenPipeError:
                # Python's flush of stdout at exit would hit the closed pipe again and print its own error.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise SystemExit(141) from None
            except UserError as error:
                raise click.ClickException(str(error)) from None
            except OSError as error:
                raise click.ClickException(f"{error.filename or ''}: {error.strerror}".lstrip(": ")) from None
            except KeyboardInterrupt:
                exit_interrupted(interrupted)

        return wrapper

    return decorate
