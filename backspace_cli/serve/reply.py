"""One reply as the API sends it: text held back while it can still change, stop strings, and the edit stream."""
from dataclasses import dataclass, replace

from ..engine.events import STOP, Delete, Done, Token
from ..render.transcript import Transcript


@dataclass(frozen=True)
class Step:
    content: str  # text that became final: what an OpenAI delta may append
    event: Token | Delete | Done  # the edit stream's event


class ReplyStream:
    """Feeds on the engine's events. Content is released as --format plain writes it, once older than
    the rewind window, and never while its end could be the start of a stop string. A stop string
    ends the reply: the edit stream takes back the text from the stop on with delete events (and a
    token event for the part of a token before it), so that its replay still gives the final text.
    """

    def __init__(self, window: int, stops: list[str]) -> None:
        self.window, self.stops = window, stops
        self.transcript = Transcript()
        self.text = ""  # the reply's text now
        self.stopped = False
        self._kept: list[Token] = []  # the tokens in the text, oldest first
        self._final_pieces = 0  # transcript pieces that are final
        self._final_length = 0  # characters of text in them
        self._sent = 0  # characters released as content

    def feed(self, event: Token | Delete) -> list[Step]:
        self._apply(event)
        if isinstance(event, Token) and self.stops:
            at = self._find_stop(len(event.text))
            if at is not None:
                self.stopped = True
                return [Step("", event), *self._cut(at)]
        return [Step(self._release(), event)]

    def finish(self, done: Done) -> Step:
        """The rest of the text, and the reply's Done record (ended by a stop string, when one was hit)."""
        if self.stopped:
            done = replace(done, text=self.text, finish_reason=STOP, counts=replace(done.counts, tokens=len(self._kept)))
        content, self._sent = self.text[self._sent :], len(self.text)
        return Step(content, done)

    def _apply(self, event: Token | Delete) -> None:
        self.transcript.apply(event)
        if isinstance(event, Token):
            self._kept.append(event)
            self.text += event.text
        else:
            self._kept.pop()
            self.text = self.text[: len(self.text) - len(event.text)]

    def _find_stop(self, added: int) -> int | None:
        """Where the first stop string starts, looking only where the last token could have made one."""
        start = max(0, len(self.text) - added - max(map(len, self.stops)) + 1)
        found = [at for at in (self.text.find(stop, start) for stop in self.stops) if at >= 0]
        return min(found, default=None)

    def _cut(self, at: int) -> list[Step]:
        steps = []
        while len(self.text) > at:
            last = self._kept[-1]
            steps.append(Step("", Delete(last.id, last.text)))
            self._apply(steps[-1].event)
        if len(self.text) < at:  # a token ran past the stop's start: its first characters stay
            steps.append(Step("", Token(last.id, last.text[: at - len(self.text)])))
            self._apply(steps[-1].event)
        return steps

    def _release(self) -> str:
        pieces = self.transcript.pieces
        final = self.transcript.final_count(self.window)
        # Final pieces are never deleted (only a stop's cut deletes them, and after it nothing is released).
        self._final_length += sum(len(piece.text) for piece in pieces[self._final_pieces : final] if not piece.deleted)
        self._final_pieces = max(self._final_pieces, final)
        end = self._final_length - self._stop_prefix(self.text[: self._final_length])
        if end <= self._sent:
            return ""
        content, self._sent = self.text[self._sent : end], end
        return content

    def _stop_prefix(self, text: str) -> int:
        """The length of the longest end of `text` that a stop string starts with."""
        return max((size for stop in self.stops for size in range(min(len(stop) - 1, len(text)), 0, -1)
                    if text.endswith(stop[:size])), default=0)
