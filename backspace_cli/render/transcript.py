"""The text of a reply as its events build it: kept and deleted pieces, and which of them are final."""
from dataclasses import dataclass

from ..engine.events import Delete, Event, Token


@dataclass
class Piece:
    text: str
    deleted: bool = False


class Transcript:
    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self._kept: list[int] = []  # indices of the pieces not deleted, oldest first

    def apply(self, event: Event) -> Piece | None:
        """Record a Token or Delete; return the piece it touched."""
        if isinstance(event, Token):
            self._kept.append(len(self.pieces))
            self.pieces.append(Piece(event.text))
            return self.pieces[-1]
        if isinstance(event, Delete):
            piece = self.pieces[self._kept.pop()]
            piece.deleted = True
            return piece
        return None

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces if not piece.deleted)

    def final_count(self, window: int) -> int:
        """How many leading pieces can no longer change: those before the rewind window."""
        if window == 0:  # nothing can be taken back
            return len(self.pieces)
        if len(self._kept) <= window:
            return 0
        return self._kept[len(self._kept) - window]
