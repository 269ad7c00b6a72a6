"""How every command reports a problem the user can fix: one line on stderr, a non-zero exit, no traceback."""
import functools

import click

from backspace_convert.errors import UserError


def friendly_errors(interrupted: str = "interrupted"):
    """UserError and OSError become one line and exit status 1; Ctrl-C prints `interrupted`, exits 130."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except UserError as error:
                raise click.ClickException(str(error)) from None
            except OSError as error:
                raise click.ClickException(f"{error.filename or ''}: {error.strerror}".lstrip(": ")) from None
            except KeyboardInterrupt:
                click.echo(interrupted, err=True)
                raise SystemExit(130) from None

        return wrapper

    return decorate
