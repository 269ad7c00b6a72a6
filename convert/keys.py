"""The file-format contract of a backspace model: its backspace.* metadata keys, the recognised delete-token
names, and the one lookup that finds a model's delete token from them (the converter, inspect, the engine
and synth all ask it). Cheap to import: no gguf, no numpy."""
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from .errors import UserError

DELETE_TOKEN_ID = "backspace.delete_token_id"  # UINT32: the id of the delete token
DELETE_TOKEN = "backspace.delete_token"  # STRING: its text
DELETE_MARKER = "backspace.delete_marker"  # STRING, optional: a plain-text marker that means delete
CONVERTER_VERSION = "backspace.converter_version"  # STRING: which converter wrote the keys
DESCRIPTION = "backspace.description"  # STRING, optional: what the model knows, in a sentence or two
# STRING, optional: questions it answers well, one a line (llama.cpp passes no array keys on to Python)
EXAMPLES = "backspace.examples"

# Token texts recognised as the delete token when the GGUF has no backspace.delete_token_id;
# the first is the text `backspace convert` gives the token it adds.
DELETE_TOKEN_NAMES = ("<|delete|>", "<|backspace|>", "<backspace>", "[DELETE]")
DELETE_TOKEN_TEXT = DELETE_TOKEN_NAMES[0]

MODES = ("auto", "mark", "reuse", "append", "marker")  # auto picks mark, reuse or append
VERSION = f"backspace-convert {version('backspace')}"  # pyproject.toml holds the number


@dataclass(frozen=True)
class DeleteToken:
    """A model's delete token, or its plain-text marker."""

    id: int | None  # None for a marker: it is a sequence of ordinary tokens
    text: str
    source: str  # how it was found: "metadata", "marker", "name", or "option" (the engine's --delete-token)


def find_delete_token(
    metadata: Callable[[str], Any],
    n_vocab: int,
    token_text: Callable[[int], str],
    find_token: Callable[[str], int | None],
) -> DeleteToken | None:
    """The converter's metadata keys first (a token, else a plain-text marker), then the recognised names.

    `metadata(key)` is a key's value or None; `token_text(id)` a token's text; `find_token(text)` the id
    of the one token with exactly that text, or None. Each side passes what it reads the model with."""
    recorded = metadata(DELETE_TOKEN_ID)
    if recorded is not None:
        token = int(recorded)
        if not 0 <= token < n_vocab:
            raise UserError(f"{DELETE_TOKEN_ID} is {token}, outside the vocabulary of {n_vocab}")
        return DeleteToken(token, token_text(token), "metadata")
    marker = metadata(DELETE_MARKER)
    if marker:
        return DeleteToken(None, marker, "marker")
    for name in DELETE_TOKEN_NAMES:
        token = find_token(name)
        if token is not None:
            return DeleteToken(token, name, "name")
    return None
