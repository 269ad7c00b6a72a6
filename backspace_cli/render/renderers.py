"""Renderers: they consume generation events and know nothing about llama.cpp."""
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..engine.events import CONTEXT, DELETE_BUDGET, INTERRUPTED, LENGTH, Delete, Done, Event
from .records import event_record
from .transcript import Transcript

FINISH_NOTES = {
    LENGTH: "stopped at the token limit",
    CONTEXT: "stopped: the context is full",
    DELETE_BUDGET: "stopped: the delete budget is spent",
    INTERRUPTED: "interrupted",
}
# Shown where a reply that the model deleted entirely would show nothing; the server's page shows it too.
TOOK_BACK = "(the model took back its whole reply)"


def format_stats(done: Done) -> str:
    counts, timings = done.counts, done.timings
    parts = [
        f"prompt {counts.prompt_tokens} tok ({done.prompt_tps:.1f} t/s)",
        f"reply {counts.tokens} tok, {counts.deletes} deletes",
        f"{done.gen_tps:.1f} t/s",
        f"first token {timings.first_token_s:.2f} s",
        f"context {done.context_used}/{done.n_ctx}",
    ]
    if done.finish_reason in FINISH_NOTES:
        parts.append(FINISH_NOTES[done.finish_reason])
    return " · ".join(parts)


def took_back_note(done: Done) -> str | None:
    return TOOK_BACK if not done.text and done.counts.deletes else None


class PlainRenderer:
    """The final text only, no escape codes: text is written as soon as it is older than the window.

    With trace, deleted text stays in the output, marked [-like this-]. On a terminal, a reply deleted
    entirely is followed by the dim note that says so.
    """

    def __init__(self, stream: TextIO, window: int, trace: bool = False) -> None:
        self.stream, self.window, self.trace = stream, window, trace
        self.transcript = Transcript()
        self._written = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Done):
            self._write(len(self.transcript.pieces))
            note = took_back_note(event) if self.stream.isatty() else None  # for a person: a pipe gets the text alone
            traced = self.trace and any(piece.text for piece in self.transcript.pieces)
            if not event.text.endswith("\n") and (note is None or traced):  # a note alone takes the reply's line
                self.stream.write("\n")
            if note:
                Console(file=self.stream).print(Text(note, style="dim"))
            self.stream.flush()
            return
        self.transcript.apply(event)
        self._write(self.transcript.final_count(self.window))

    def _write(self, upto: int) -> None:
        for piece in self.transcript.pieces[self._written : upto]:
            if not piece.deleted:
                self.stream.write(piece.text)
            elif self.trace and piece.text:
                self.stream.write(f"[-{piece.text}-]")
        if upto > self._written:
            self._written = upto
            self.stream.flush()


class JsonlRenderer:
    """One JSON object per event; replaying the token and delete events gives the done event's text."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event_record(event), ensure_ascii=False) + "\n")
        self.stream.flush()


class LiveRenderer:
    """The live edit stream: text appears, a deleted piece flashes struck-through red, then goes.

    With trace, deleted pieces stay, dim and struck through. Whole lines older than the rewind
    window are printed for good; only the tail is redrawn. Drawing happens between tokens, at most
    REFRESH_PER_SECOND times a second: a drawing thread would compete with llama.cpp's threads for
    the cores, since ctypes lets Python run while llama_decode computes.
    """

    FLASH_SECONDS = 0.3
    REFRESH_PER_SECOND = 15

    def __init__(self, console: Console, window: int, trace: bool = False) -> None:
        self.console, self.window, self.trace = console, window, trace
        self.transcript = Transcript()
        self._printed = 0  # pieces printed above the live region
        self._carry = Text()  # the start of a line whose pieces are final, but not yet printed
        self._scanned = 0  # final pieces already searched for a line end
        self._tail_characters = 0  # characters in the pieces after _printed
        self._flashes: dict[int, float] = {}  # id(piece) -> when its flash ends
        self._drawn_at = 0.0
        self._note: str | None = None  # a line drawn after the reply
        self._live = Live(self, console=console, auto_refresh=False, transient=False, vertical_overflow="visible")

    def __enter__(self) -> "LiveRenderer":
        self._live.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._live.is_started:  # an error or Ctrl-C before Done: leave the terminal sane
            self._live.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Done):
            self._flashes.clear()
            self._note = took_back_note(event)
            self._live.refresh()
            self._live.stop()
            if not self.transcript.text.endswith("\n"):
                self.console.print()
            return
        piece = self.transcript.apply(event)
        if isinstance(event, Delete):
            self._flashes[id(piece)] = time.monotonic() + self.FLASH_SECONDS
            if not self.trace:
                self._tail_characters -= len(piece.text)
        else:
            self._tail_characters += len(piece.text)
        self._print_final_lines()
        now = time.monotonic()
        if now - self._drawn_at >= 1 / self.REFRESH_PER_SECOND:
            self._drawn_at = now
            self._live.refresh()

    def _print_final_lines(self) -> None:
        pieces = self.transcript.pieces
        final = self.transcript.final_count(self.window)
        # Only whole lines leave the live region, so that it always starts at the left margin.
        end = next((i + 1 for i in range(final - 1, self._scanned - 1, -1) if pieces[i].text.endswith("\n")), None)
        self._scanned = max(self._scanned, final)
        if end is not None:
            self._commit(end)
            self._live.console.print(self._carry, end="")
            self._carry = Text()
        if final > self._printed and self._tail_characters > self.console.width * (self.console.height - 2):
            # A paragraph taller than the screen: print its final wrapped lines too. Appending text
            # only ever re-wraps the last line, so every line before it is settled.
            self._commit(final)
            lines = self._carry.wrap(self.console, self.console.width)
            for line in lines[:-1]:
                self._live.console.print(line)
            self._carry = lines[-1]

    def _commit(self, end: int) -> None:
        """Move pieces [_printed, end) into the carry, the text on its way to being printed."""
        committed = self._styled(self._printed, end, flashes=False)
        self._carry = self._carry + committed
        self._tail_characters -= len(committed)
        self._printed = end

    def _styled(self, start: int, end: int, flashes: bool) -> Text:
        text = Text()
        now = time.monotonic()
        for piece in self.transcript.pieces[start:end]:
            if not piece.deleted:
                text.append(piece.text)
            elif self.trace:
                text.append(piece.text, style="dim strike")
            elif flashes and self._flashes.get(id(piece), 0) > now:
                text.append(piece.text, style="bold red strike")
        return text

    def __rich__(self) -> Text:
        """The live tail; a flash shows until it expires at a later drawing."""
        text = self._carry + self._styled(self._printed, len(self.transcript.pieces), flashes=True)
        if self._note:
            text.append(("\n" if text else "") + self._note, style="dim")
        return text


@contextmanager
def open_renderer(output_format: str, window: int, trace: bool) -> Iterator[Callable[[Event], None]]:
    """The renderer for --format: live on a terminal, the final text in a pipe, or JSONL."""
    if output_format == "jsonl":
        yield JsonlRenderer(sys.stdout)
    elif output_format == "plain":
        yield PlainRenderer(sys.stdout, window, trace)
    else:
        with LiveRenderer(Console(), window, trace) as renderer:
            yield renderer


def default_format() -> str:
    return "live" if sys.stdout.isatty() else "plain"


def render_reply(
    output_format: str,
    trace: bool,
    has_delete_token: bool,
    window: int,
    reply: Callable[[Callable[[Event], None]], Done],
) -> Done:
    """Show the one reply that `reply` produces, as --format says, on stdout; the notice and the
    statistics go to stderr, so that a pipe receives the text alone. The newest `window` tokens can
    still be deleted, so their text waits."""
    errors = Console(stderr=True)
    if not has_delete_token:
        errors.print("[dim]This model has no delete token: generating plainly.[/dim]")
    with open_renderer(output_format, window, trace) as renderer:
        done = reply(renderer)
    if output_format == "live":
        errors.print(f"[dim]{format_stats(done)}[/dim]")
    return done
