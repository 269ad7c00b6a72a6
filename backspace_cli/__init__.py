"""backspace: give language models a delete key."""

__version__ = "0.1.0"
