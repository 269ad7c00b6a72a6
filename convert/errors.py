"""The one exception type for problems a user can fix: its message is one line, shown without a traceback.

It lives in the lowest layer, so that the converter, the engine and the front-ends all raise it."""


class UserError(Exception):
    pass
