"""backspace: give language models a delete key. The Python API (docs/python-api.md):

    load(model=None, **settings)     open a GGUF model, the built-in one by default
    stream_generate(model, prompt)   Token and Delete events, then Done; prompt: text or chat messages
    generate(model, prompt)          the Done record: the final text, why it ended, counts, timings

Everything not named here is private.
"""
from importlib.metadata import version

from .api import generate, load, stream_generate
from .engine.events import Delete, Done, Token

__version__ = version("backspace")  # pyproject.toml holds the number
__all__ = ["load", "stream_generate", "generate", "Token", "Delete", "Done"]
