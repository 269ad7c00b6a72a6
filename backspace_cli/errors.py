"""The one exception type for problems a user can fix: its message is one line, shown without a traceback."""


class UserError(Exception):
    pass
