"""`backspace complete`: one raw continuation of a prompt, rendered live, as plain text, or as JSONL."""
from ..api import stream_generate
from ..engine.engine import consume
from ..engine.events import Done
from ..render.renderers import render_reply
from ..engine.session import Session
from ..settings import Settings


def run_complete(settings: Settings, prompt: str, output_format: str, trace: bool) -> Done:
    session = Session(settings)
    return render_reply(
        output_format, trace, session.delete_token is not None, session.rewind_window,
        lambda renderer: consume(stream_generate(session, prompt), renderer),
    )
