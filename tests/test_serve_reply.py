"""The server's reply stream: what an OpenAI delta may append (final text only), and stop strings."""
from hypothesis import given, strategies as st

from backspace_cli.engine.events import INTERRUPTED, STOP, Counts, Delete, Done, Timings, Token
from backspace_cli.serve.reply import ReplyStream


def done(text: str, finish: str = STOP) -> Done:
    return Done(finish, text, Counts(1, 1, 0, 0, 0, 0), Timings(0, 0, 0), n_ctx=128, context_used=1)


def run(window: int, stops: list[str], events, finish: str = STOP):
    """Feed the events until the stream stops; return (contents, edit events, the final Done)."""
    stream, steps = ReplyStream(window, stops), []
    for event in events:
        steps += stream.feed(event)
        if stream.stopped:
            break
    last = stream.finish(done(stream.text, finish))
    return [step.content for step in steps] + [last.content], [step.event for step in steps], last.event


def replay(edits) -> str:
    pieces = []
    for event in edits:
        if isinstance(event, Token):
            pieces.append(event.text)
        else:
            assert pieces.pop() == event.text
    return "".join(pieces)


def test_text_inside_the_rewind_window_waits_so_a_delete_never_reaches_the_deltas():
    events = [Token(1, "a"), Token(2, "b"), Token(3, "x"), Delete(3, "x"), Token(4, "c"), Token(5, "d")]
    contents, edits, final = run(2, [], events)
    assert contents == ["", "", "a", "", "", "b", "cd"]  # each piece once it is two tokens old
    assert "".join(contents) == final.text == replay(edits) == "abcd"


def test_without_a_window_text_goes_at_once():
    contents, _, final = run(0, [], [Token(1, "a"), Token(2, "b")])
    assert contents == ["a", "b", ""] and final.text == "ab"


def test_a_stop_string_ends_the_reply_before_it_and_the_edit_stream_takes_it_back():
    events = [Token(1, "ab"), Token(2, "cd"), Token(3, "ef"), Token(4, "never")]
    contents, edits, final = run(0, ["de"], events, finish=INTERRUPTED)
    assert (final.text, final.finish_reason, final.counts.tokens) == ("abc", STOP, 2)
    assert "".join(contents) == replay(edits) == "abc"
    assert edits[-2:] == [Delete(2, "cd"), Token(2, "c")]  # the part of "cd" before the stop stays


def test_text_that_could_start_a_stop_string_waits():
    contents, _, final = run(0, ["xyz"], [Token(1, "ab"), Token(2, "xy"), Token(3, "q")])
    assert contents == ["ab", "", "xyq", ""] and final.text == "abxyq"


@given(
    pieces=st.lists(st.text(alphabet="abx", min_size=1, max_size=3), max_size=12),
    deletes=st.lists(st.booleans(), max_size=12),
    window=st.integers(0, 4),
    stops=st.lists(st.text(alphabet="abx", min_size=1, max_size=3), max_size=2),
)
def test_deltas_and_the_edit_stream_both_give_the_final_text_which_holds_no_stop(pieces, deletes, window, stops):
    events, kept = [], []
    for index, (text, delete) in enumerate(zip(pieces, deletes + [False] * len(pieces))):
        events.append(Token(index, text))
        kept.append(events[-1])
        if delete and window:  # the engine deletes only inside the window
            events.append(Delete(kept[-1].id, kept.pop().text))
    contents, edits, final = run(window, stops, events)
    assert "".join(contents) == replay(edits) == final.text
    assert not any(stop in final.text for stop in stops)
