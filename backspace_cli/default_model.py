"""The built-in model, made by `backspace train` (make demo-model) and shipped as package data, and the one
rule for which model a command opens when it is given none."""
from pathlib import Path

from backspace_convert.errors import UserError

DEFAULT_MODEL = Path(__file__).parent / "models" / "backspace-tiny.gguf"


def default_model_path() -> Path | None:
    """The built-in model's path, or None if this install does not carry it."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


def model_or_builtin(path: str | None, option: str = "-m PATH.gguf or set BACKSPACE_MODEL") -> str:
    """`path`, else the built-in model; `option` says how to give a model, for an install without one."""
    if path:
        return path
    builtin = default_model_path()
    if builtin is None:
        raise UserError(f"no model: pass {option} (this install has no built-in model)")
    return str(builtin)
