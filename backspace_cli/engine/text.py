"""Incremental UTF-8 text for a token stack: every push yields whole characters, every pop undoes one push."""
import codecs


class TokenText:
    """Turns token pieces (bytes that may split a character) into text, and takes it back on pop."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Per pushed token: the text it added and the decoder state before it, so pop is exact.
        self._texts: list[str] = []
        self._states: list[tuple[bytes, int]] = []

    def push(self, piece: bytes) -> str:
        self._states.append(self._decoder.getstate())
        text = self._decoder.decode(piece)
        self._texts.append(text)
        return text

    def pop(self) -> str:
        self._decoder.setstate(self._states.pop())
        return self._texts.pop()

    def __len__(self) -> int:
        return len(self._texts)

    def suffix_pieces(self, suffix: str) -> int:
        """How many of the last pushes hold `suffix` at the end of the text; 0 if it does not end so."""
        joined = ""
        for count, piece in enumerate(reversed(self._texts), 1):
            joined = piece + joined
            if len(joined) >= len(suffix):
                return count if joined.endswith(suffix) else 0
        return 0

    def prefix_pieces(self, marker: str) -> int:
        """How many of the last pushes hold the longest end of the text that could begin `marker`."""
        tail = self._tail(len(marker) - 1)
        for start in range(len(tail)):
            if marker.startswith(tail[start:]):
                return self.suffix_pieces(tail[start:])
        return 0

    def _tail(self, length: int) -> str:
        """The last `length` characters of the text, or all of it if shorter."""
        joined = ""
        for piece in reversed(self._texts):
            if len(joined) >= length:
                break
            joined = piece + joined
        return joined[len(joined) - length:] if len(joined) > length else joined

    @property
    def text(self) -> str:
        return "".join(self._texts)
