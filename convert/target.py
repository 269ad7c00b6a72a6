"""Checking, before any work, that a converted file may be written where it is asked for."""
import os
from pathlib import Path

from .reader import ConvertError


def check_target(target: Path, source: Path, force: bool) -> None:
    """Refuse, before any work, an output that cannot or may not be written."""
    directory = target.parent
    if target.exists() and target.resolve() == source.resolve():
        raise ConvertError(f"the output would overwrite the input {source}: the input is never modified")
    if not directory.exists():
        raise ConvertError(f"output directory does not exist: {directory}")
    if not directory.is_dir():
        raise ConvertError(f"output directory is not a directory: {directory}")
    if target.exists() and not force:
        raise ConvertError(f"output exists: {target} (use --force to replace it)")
    if target.is_dir():
        raise ConvertError(f"output is a directory: {target}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConvertError(f"cannot write to the output directory {directory}: permission denied")
