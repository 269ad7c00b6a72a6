"""backspace: give language models a delete key."""
from importlib.metadata import version

__version__ = version("backspace")  # pyproject.toml holds the number
