"""Where backspace keeps what it fetches or builds once: backspace/ in $XDG_CACHE_HOME, else in ~/.cache.

The Makefile's CACHE_DIR names the same folder (it cannot import this), so that what `make` fetches, the
converter, the tests and the benchmarks find.
"""
import os
from pathlib import Path


def cache_folder() -> Path:
    """backspace's cache folder; an empty XDG_CACHE_HOME counts as unset, as the XDG spec and the Makefile have it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backspace"
