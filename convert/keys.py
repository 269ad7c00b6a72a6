"""The backspace.* metadata keys that mark a GGUF file as a backspace model, and the converter's modes."""
from importlib.metadata import version

DELETE_TOKEN_ID = "backspace.delete_token_id"  # UINT32: the id of the delete token
DELETE_TOKEN = "backspace.delete_token"  # STRING: its text
DELETE_MARKER = "backspace.delete_marker"  # STRING, optional: a plain-text marker that means delete
CONVERTER_VERSION = "backspace.converter_version"  # STRING: which converter wrote the keys
ALL = (DELETE_TOKEN_ID, DELETE_TOKEN, DELETE_MARKER, CONVERTER_VERSION)

MODES = ("auto", "mark", "reuse", "append", "marker")  # auto picks mark, reuse or append
VERSION = f"backspace-convert {version('backspace')}"  # pyproject.toml holds the number
