"""Renderers, fed event sequences: what a pipe receives, and what a terminal screen finally shows."""
import io
import json
import time

import pyte
from rich.console import Console
from rich.text import Text

from backspace_cli.engine.events import Counts, Delete, Done, Timings, Token
from backspace_cli.render.renderers import JsonlRenderer, LiveRenderer, PlainRenderer
from backspace_cli.render.transcript import Transcript


def done(text: str) -> Done:
    return Done("stop", text, Counts(3, 3, 0, 0, 0, 0), Timings(0.1, 0.1, 0.1), n_ctx=512, context_used=3)


def tokens(*texts: str) -> list[Token]:
    return [Token(i, text) for i, text in enumerate(texts)]


def final_text(events) -> str:
    transcript = Transcript()
    for event in events:
        transcript.apply(event)
    return transcript.text


class Screen:
    """A terminal emulator that renders everything written to it, cursor movements included."""

    def __init__(self, width: int, height: int = 24) -> None:
        self.screen = pyte.HistoryScreen(width, height, history=1000)
        self.stream = pyte.Stream(self.screen)
        self.console = Console(file=self, force_terminal=True, width=width, height=height, color_system="standard")

    def write(self, data: str) -> None:
        self.stream.feed(data.replace("\n", "\r\n"))  # a tty's output processing turns \n into \r\n

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def transcript(self) -> list[str]:
        """Everything that scrolled off the top, then the screen: what a person can scroll back through."""
        scrolled = ["".join(row[x].data for x in range(self.screen.columns)).rstrip() for row in self.screen.history.top]
        return [line for line in scrolled + self.lines() if line]

    def struck(self) -> str:
        return "".join(char.data for row in self.screen.buffer.values() for char in row.values() if char.strikethrough)


def show_live(events, width=20, trace=False, window=2) -> Screen:
    screen = Screen(width)
    with LiveRenderer(screen.console, window=window, trace=trace) as renderer:
        for event in events:
            renderer(event)
        renderer(done(final_text(events)))
    return screen


def test_plain_writes_text_once_it_leaves_the_window_and_the_rest_at_the_end():
    stream = io.StringIO()
    renderer = PlainRenderer(stream, window=2)
    for event in tokens("a", "b", "c"):
        renderer(event)
    assert stream.getvalue() == "a"  # "b" and "c" can still be deleted
    renderer(Delete(2, "c"))
    renderer(done("ab"))
    assert stream.getvalue() == "ab\n"


def test_plain_writes_each_token_at_once_when_nothing_can_be_deleted():
    stream = io.StringIO()
    renderer = PlainRenderer(stream, window=0)
    renderer(Token(0, "a"))
    assert stream.getvalue() == "a"
    renderer(Token(1, "b"))
    assert stream.getvalue() == "ab"


def test_plain_trace_marks_deleted_text():
    stream = io.StringIO()
    renderer = PlainRenderer(stream, window=8, trace=True)
    for event in [*tokens("Water is made of", " resins"), Delete(1, " resins"), Token(2, " H2O")]:
        renderer(event)
    renderer(done("Water is made of H2O"))
    assert stream.getvalue() == "Water is made of[- resins-] H2O\n"


def test_jsonl_replays_to_the_final_text():
    stream = io.StringIO()
    renderer = JsonlRenderer(stream)
    for event in [*tokens("a", "b"), Delete(1, "b"), Token(2, "c")]:
        renderer(event)
    renderer(done("ac"))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [record["type"] for record in records] == ["token", "token", "delete", "token", "done"]
    assert records[-1]["text"] == "ac"


def test_live_screen_shows_exactly_the_final_text_after_deletes():
    events = [*tokens("Water ", "is ", "made ", "of ", "resins"), Delete(4, "resins"), Token(5, "H2O")]
    screen = show_live(events, width=40)
    assert screen.lines()[0] == "Water is made of H2O"
    assert screen.struck() == ""


def test_live_text_wraps_and_a_delete_across_the_wrap_leaves_no_trace():
    events = [*tokens("0123456789", "abcdefghij", "KLMNO"), Delete(2, "KLMNO"), Delete(1, "abcdefghij"),
              Token(3, "xyz")]
    screen = show_live(events, width=12)
    assert screen.lines()[:2] == ["0123456789xy", "z"]


def test_live_deleting_a_newline_joins_the_lines_again():
    events = [*tokens("first", "\n", "second"), Delete(2, "second"), Delete(1, "\n"), Token(3, " line")]
    screen = show_live(events, width=30)
    assert screen.lines()[:2] == ["first line", ""]


def test_live_long_output_keeps_final_lines_and_redraws_only_the_tail():
    lines = [f"line {n}\n" for n in range(40)]
    events = [*tokens(*lines), Delete(39, lines[-1]), Token(40, "the end")]
    screen = show_live(events, width=30, window=4)  # 40 lines on a 24-line screen
    assert screen.lines() == [f"line {n}" for n in range(18, 39)] + ["the end", "", ""]
    assert screen.transcript() == [f"line {n}" for n in range(39)] + ["the end"]


def test_live_utf8_pieces_render_whole_characters():
    events = [*tokens("caf", "", "é", " ☕"), Delete(3, " ☕"), Token(4, " 🍵")]
    screen = show_live(events, width=20)
    assert screen.lines()[0].startswith("café 🍵")


def test_live_trace_keeps_deleted_text_struck_through():
    events = [*tokens("Water is made of", " resins"), Delete(1, " resins"), Token(2, " H2O")]
    screen = show_live(events, width=60, trace=True)
    assert screen.lines()[0] == "Water is made of resins H2O"
    assert screen.struck() == " resins"


def test_a_deleted_piece_flashes_then_goes():
    screen = Screen(40)
    with LiveRenderer(screen.console, window=8) as renderer:
        for event in [*tokens("good", " bad"), Delete(1, " bad")]:
            renderer(event)
        assert renderer.__rich__().plain == "good bad"  # still flashing
        time.sleep(LiveRenderer.FLASH_SECONDS + 0.05)
        assert renderer.__rich__().plain == "good"
        renderer(done("good"))


def test_live_a_paragraph_taller_than_the_screen_scrolls_cleanly():
    words = [f"w{n:02d} " for n in range(100)]  # 400 characters, no newline, on a 20x8 screen
    screen = Screen(20, height=8)
    with LiveRenderer(screen.console, window=4) as renderer:
        for event in [*tokens(*words), Delete(99, words[-1]), Token(100, "end")]:
            renderer(event)
        renderer(done("".join(words[:-1]) + "end"))
    expected = Console(width=20).render_lines(Text("".join(words[:-1]) + "end"), pad=False)
    wrapped = ["".join(segment.text for segment in line).rstrip() for line in expected]
    assert screen.transcript() == wrapped  # every line once, in order: nothing lost or repeated
