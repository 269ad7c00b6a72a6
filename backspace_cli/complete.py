"""`backspace complete`: one raw continuation of a prompt, rendered live, as plain text, or as JSONL."""
import sys

from rich.console import Console

from . import defaults
from .engine import consume
from .events import Done
from .render import JsonlRenderer, LiveRenderer, PlainRenderer, format_stats
from .session import Session
from .settings import Settings

FORMATS = ("live", "plain", "jsonl")


def default_format() -> str:
    return "live" if sys.stdout.isatty() else "plain"


def no_delete_token_notice(session: Session, console: Console) -> None:
    if session.delete_token is None:
        console.print("[dim]This model has no delete token: generating plainly.[/dim]")


def run_complete(settings: Settings, prompt: str, output_format: str, trace: bool) -> Done:
    errors = Console(stderr=True)
    session = Session(settings)
    no_delete_token_notice(session, errors)
    tokens = session.model.tokenize(prompt, add_bos=True)
    events = session.generate(tokens)
    if output_format == "jsonl":
        return consume(events, JsonlRenderer(sys.stdout))
    if output_format == "plain":
        return consume(events, PlainRenderer(sys.stdout, defaults.REWIND_WINDOW, trace))
    done = consume(events, LiveRenderer(Console(), defaults.REWIND_WINDOW, trace))
    errors.print(f"[dim]{format_stats(done)}[/dim]")
    return done
