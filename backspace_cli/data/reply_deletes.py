"""One reply's delete risks from its events: its longest run of deletes, and whether it emptied itself."""
from dataclasses import dataclass

from ..engine.events import Delete, Event, Token


@dataclass
class ReplyDeletes:
    """Fed a reply's events in order; a run is deletes with no token written between them, and a reply
    emptied itself when a delete took back the last token it still showed."""

    longest_run: int = 0
    emptied: bool = False
    run: int = 0  # the deletes since the last token
    shown: int = 0  # tokens the reply shows now

    def add(self, event: Event) -> None:
        if isinstance(event, Token):
            self.run = 0
            self.shown += 1
        elif isinstance(event, Delete):
            self.run += 1
            self.longest_run = max(self.longest_run, self.run)
            self.shown -= 1
            self.emptied = self.emptied or self.shown == 0

