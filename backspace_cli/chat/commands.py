"""Chat's slash commands: each a small function of the running chat and the text after the command."""
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from backspace_convert.atomic import atomic_output
from backspace_convert.errors import UserError
from ..render.renderers import format_stats
from ..settings import Settings

if TYPE_CHECKING:
    from .repl import Repl


class ExitChat(Exception):
    pass


def show_help(repl: "Repl", argument: str) -> None:
    table = Table(box=None, show_header=False)
    for name, (_, usage, description) in COMMANDS.items():
        table.add_row(f"[bold]{usage or name}[/bold]", description)
    table.add_row('[bold]"""[/bold]', 'start and end a multi-line message')
    repl.console.print(table)


def leave(repl: "Repl", argument: str) -> None:
    raise ExitChat


def clear(repl: "Repl", argument: str) -> None:
    repl.chat.conversation.exchanges.clear()
    repl.console.print("[dim]History cleared.[/dim]")


def set_system(repl: "Repl", argument: str) -> None:
    repl.chat.conversation.system = argument or None
    repl.console.print(f"[dim]System prompt {'set' if argument else 'reset to the model default'}.[/dim]")


def set_value(repl: "Repl", argument: str) -> None:
    key, _, value = argument.partition(" ")
    kind = Settings.TUNABLE.get(key)
    if kind is None:
        raise UserError(f"/set: unknown key {key!r}; one of {', '.join(Settings.TUNABLE)}")
    try:
        parsed = kind(value.strip())
    except ValueError:
        raise UserError(f"/set {key}: {value.strip()!r} is not a {kind.__name__}") from None
    setattr(repl.chat.session.settings, key, parsed)
    repl.console.print(f"[dim]{key} = {parsed}[/dim]")


def show(repl: "Repl", argument: str) -> None:
    session = repl.chat.session
    model, delete = session.model, session.delete_token
    table = Table(box=None, show_header=False)
    table.add_row("model", str(model.path))
    table.add_row("architecture", model.metadata.get("general.architecture", "?"))
    table.add_row("context", f"{model.n_ctx} tokens")
    table.add_row("vocabulary", f"{model.n_vocab} tokens")
    table.add_row("delete token", f"{delete.text!r} (id {delete.id}, from {delete.source})" if delete else "none")
    table.add_row("chat template", repl.chat.template.source)
    table.add_row("system prompt", repl.chat.conversation.system or "(the model's default)")
    table.add_row("trace", "on" if repl.trace else "off")
    for key in Settings.TUNABLE:
        table.add_row(key, str(getattr(session.settings, key)))
    repl.console.print(table)


def trace(repl: "Repl", argument: str) -> None:
    if argument not in ("on", "off"):
        raise UserError("/trace on|off")
    repl.trace = argument == "on"
    repl.console.print(f"[dim]Trace {argument}.[/dim]")


def stats(repl: "Repl", argument: str) -> None:
    last = repl.chat.last
    repl.console.print(f"[dim]{format_stats(last) if last else 'No reply yet.'}[/dim]")


def undo(repl: "Repl", argument: str) -> None:
    exchange = repl.chat.undo()
    repl.console.print(f"[dim]Forgot: {exchange.user!r}[/dim]" if exchange else "[dim]Nothing to undo.[/dim]")


def regenerate(repl: "Repl", argument: str) -> None:
    exchange = repl.chat.undo()
    if exchange is None:
        raise UserError("/regen: no reply to regenerate yet")
    repl.turn(exchange.user)


def save(repl: "Repl", argument: str) -> None:
    if not argument:
        raise UserError("/save FILE")
    path = Path(argument).expanduser()
    session = repl.chat.session
    record = {
        "model": str(session.model.path),
        "delete_token": session.delete_token.text if session.delete_token else None,
        "settings": {key: getattr(session.settings, key) for key in Settings.TUNABLE},
        **repl.chat.conversation.to_json(),
    }
    with atomic_output(path, force=True) as temporary:
        temporary.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    repl.console.print(f"[dim]Saved {len(repl.chat.conversation.exchanges)} exchanges to {path}.[/dim]")


Command = Callable[["Repl", str], None]
COMMANDS: dict[str, tuple[Command, str, str]] = {
    "/help": (show_help, "", "this list"),
    "/exit": (leave, "", "leave (also /bye, Ctrl-D)"),
    "/bye": (leave, "", "leave"),
    "/clear": (clear, "", "forget the conversation (the system prompt stays)"),
    "/system": (set_system, "/system TEXT", "set the system prompt (empty: the model's default)"),
    "/set": (set_value, "/set KEY VALUE", f"change a setting: {', '.join(Settings.TUNABLE)}"),
    "/show": (show, "", "the settings and the model"),
    "/trace": (trace, "/trace on|off", "keep deleted text visible, struck through"),
    "/stats": (stats, "", "the last reply's statistics"),
    "/undo": (undo, "", "forget the last exchange"),
    "/regen": (regenerate, "", "regenerate the last reply"),
    "/save": (save, "/save FILE", "write the transcript as JSON, every delete included"),
}


def run_command(repl: "Repl", line: str) -> None:
    name, _, argument = line.strip().partition(" ")
    entry = COMMANDS.get(name)
    if entry is None:
        raise UserError(f"unknown command {name}; /help lists them")
    entry[0](repl, argument.strip())
