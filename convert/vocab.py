"""The vocabulary facts a conversion needs, read from a GGUFReader: tokens, types, the delete token, candidates."""
import re
from dataclasses import dataclass
from functools import partial

import gguf

from .keys import DeleteToken, find_delete_token
from .reader import ConvertError
from .validate import SCORES, TOKEN_TYPES, token_texts

TokenType = gguf.TokenType
# Token texts that trained models leave unused, so that a fine-tune can give them a new meaning.
RESERVED = re.compile(
    r"<\|reserved_special_token_\d+\|>|<unused\d+>|\[PAD\d+\]|<\|reserved_\d+\|>|<\|extra_\d+\|>"
    r"|<extra_id_\d+>|<\|unused_\d+\|>|<\|dummy_\d+\|>|\[unused\d+\]"
)
MAX_CANDIDATES = 5


@dataclass(frozen=True)
class Candidate:
    id: int
    text: str
    type: str


class Vocabulary:
    """The tokenizer arrays of a GGUF file, as plain Python lists."""

    def __init__(self, reader: gguf.GGUFReader) -> None:
        self.reader = reader
        self.tokens: list[str] = []
        for index, text in enumerate(token_texts(reader)):
            try:
                self.tokens.append(str(text, encoding="utf-8"))
            except UnicodeDecodeError:
                raise ConvertError(f"token {index}'s text is not valid UTF-8") from None
        types = reader.get_field(TOKEN_TYPES)
        self.types: list[int] | None = types.contents() if types is not None else None
        scores = reader.get_field(SCORES)
        self.scores: list[float] | None = scores.contents() if scores is not None else None
        self._ids: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def find(self, text: str) -> int | None:
        """The id of the token whose text is exactly `text`, if any."""
        if self._ids is None:
            self._ids = {}
            for index, token in enumerate(self.tokens):
                self._ids.setdefault(token, index)
        return self._ids.get(text)

    def parse(self, spec: str) -> int:
        """A token given as an id or as its exact text; ConvertError when there is none."""
        if spec.strip().isdigit():
            token = int(spec)
            if token >= len(self.tokens):
                raise ConvertError(f"token id {token} is out of range (the vocabulary has {len(self.tokens)} tokens)")
            return token
        token = self.find(spec)
        if token is None:
            raise ConvertError(f"token {spec!r} is not in the vocabulary")
        return token

    def delete_token(self) -> DeleteToken | None:
        """The delete token as the engine finds it: the one lookup, asked of this file's tokens."""
        return find_delete_token(partial(field_value, self.reader), len(self.tokens), self.tokens.__getitem__, self.find)

    def type_name(self, token: int) -> str:
        if self.types is None:
            return "NORMAL"
        try:
            return TokenType(self.types[token]).name
        except ValueError:
            return str(self.types[token])

    def special_ids(self) -> set[int]:
        """Ids that the metadata names as BOS, EOS, padding and so on: never free to reuse."""
        ids = set()
        for field in self.reader.fields.values():
            if field.name.startswith("tokenizer.ggml.") and field.name.endswith("_token_id"):
                ids.add(int(field.contents()))
        return ids

    def candidates(self, limit: int = MAX_CANDIDATES) -> list[Candidate]:
        """Reserved, unused or padding tokens that a fine-tune could have repurposed."""
        taken = self.special_ids()
        found = []
        for index, text in enumerate(self.tokens):
            unused = self.types is not None and self.types[index] == TokenType.UNUSED
            if index not in taken and (unused or RESERVED.fullmatch(text)):
                found.append(Candidate(index, text, self.type_name(index)))
                if len(found) == limit:
                    break
        return found


def field_value(reader: gguf.GGUFReader, key: str):
    field = reader.get_field(key)
    return field.contents() if field is not None else None
