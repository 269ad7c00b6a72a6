"""The one exception type for problems a user can fix: its message is one line, shown without a traceback.

It lives in the lowest layer, so that the converter, the engine and the front-ends all raise it."""


class UserError(Exception):
    pass


def missing_extra(needs: str, extra: str) -> UserError:
    """The line for an optional dependency that is not installed: backspace installs from its checkout."""
    return UserError(f"{needs}: in backspace's checkout, pip install -e '.[{extra}]'")
