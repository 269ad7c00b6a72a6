"""`backspace complete`: one raw continuation of a prompt, rendered live, as plain text, or as JSONL."""
from rich.console import Console

from . import defaults
from .engine import consume
from .events import Done
from .render import format_stats, notice_missing_delete_token, open_renderer
from .session import Session
from .settings import Settings


def run_complete(settings: Settings, prompt: str, output_format: str, trace: bool) -> Done:
    errors = Console(stderr=True)
    session = Session(settings)
    if session.delete_token is None:
        notice_missing_delete_token(errors)
    tokens = session.model.tokenize(prompt, add_bos=True)
    with open_renderer(output_format, defaults.REWIND_WINDOW, trace) as renderer:
        done = consume(session.generate(tokens), renderer)
    if output_format == "live":
        errors.print(f"[dim]{format_stats(done)}[/dim]")
    return done
