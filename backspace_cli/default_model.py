"""The built-in model, trained and exported by training/ and shipped as package data."""
from pathlib import Path

DEFAULT_MODEL = Path(__file__).parent / "models" / "backspace-tiny.gguf"


def default_model_path() -> Path | None:
    """The built-in model's path, or None if this install does not carry it."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None
