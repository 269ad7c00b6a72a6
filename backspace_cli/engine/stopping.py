"""A caller's way to end the engine's long work early (tokenizing a prompt, decoding it): a callable that
the work asks between its steps, never inside one, so that what it leaves behind is whole."""
from collections.abc import Callable

Stop = Callable[[], bool]  # true once the work is no longer wanted: its client has left


class Stopped(Exception):
    """The caller's stop said so between two steps."""

