"""Chat's slash commands: each a small function of the running chat and the text after the command."""
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rich.table import Table

from backspace_convert.errors import UserError
from backspace_convert.keys import DeleteToken
from .conversation import Conversation, Exchange
from .transcript_file import write_transcript
from ..engine.events import Done
from ..engine.model import Model
from ..render.renderers import format_stats
from ..settings import Settings


class ExitChat(Exception):
    pass


class ChatControls(Protocol):
    """What a slash command may read and do; the REPL provides it, so that commands never import the REPL."""

    trace: bool  # deleted text stays visible, struck through

    @property
    def settings(self) -> Settings: ...  # the session's own: a change holds from the next reply on

    @property
    def conversation(self) -> Conversation: ...

    @property
    def model(self) -> Model: ...

    @property
    def delete_token(self) -> DeleteToken | None: ...

    @property
    def template_source(self) -> str: ...  # where the chat template came from

    @property
    def last(self) -> Done | None: ...  # the last reply's record

    def print(self, renderable: object) -> None: ...

    def undo(self) -> Exchange | None: ...  # forget the last exchange, and return it

    def turn(self, message: str) -> None: ...  # answer a message, as if the user had typed it


def show_help(chat: ChatControls, argument: str) -> None:
    table = Table(box=None, show_header=False)
    for name, (_, usage, description) in COMMANDS.items():
        table.add_row(f"[bold]{usage or name}[/bold]", description)
    table.add_row('[bold]"""[/bold]', 'start and end a multi-line message')
    chat.print(table)


def leave(chat: ChatControls, argument: str) -> None:
    raise ExitChat


def clear(chat: ChatControls, argument: str) -> None:
    chat.conversation.exchanges.clear()
    chat.print("[dim]History cleared.[/dim]")


def set_system(chat: ChatControls, argument: str) -> None:
    chat.conversation.system = argument or None
    chat.print(f"[dim]System prompt {'set' if argument else 'reset to the model default'}.[/dim]")


def set_value(chat: ChatControls, argument: str) -> None:
    key, _, value = argument.partition(" ")
    if key not in Settings.TUNABLE:
        raise UserError(f"/set: unknown key {key!r}; one of {', '.join(Settings.TUNABLE)}")
    try:
        parsed = Settings.parse(key, value.strip())
    except ValueError as error:  # the setting keeps its value
        raise UserError(f"/set {key}: {error}") from None
    setattr(chat.settings, key, parsed)
    chat.print(f"[dim]{key} = {parsed}[/dim]")


def show(chat: ChatControls, argument: str) -> None:
    model, delete = chat.model, chat.delete_token
    table = Table(box=None, show_header=False)
    table.add_row("model", str(model.path))
    table.add_row("architecture", model.metadata.get("general.architecture", "?"))
    table.add_row("context", f"{model.n_ctx} tokens")
    table.add_row("vocabulary", f"{model.n_vocab} tokens")
    table.add_row("delete token", f"{delete.text!r} (id {delete.id}, from {delete.source})" if delete else "none")
    table.add_row("chat template", chat.template_source)
    table.add_row("system prompt", chat.conversation.system or "(the model's default)")
    table.add_row("trace", "on" if chat.trace else "off")
    for key in Settings.TUNABLE:
        table.add_row(key, str(getattr(chat.settings, key)))
    chat.print(table)


def trace(chat: ChatControls, argument: str) -> None:
    if argument not in ("on", "off"):
        raise UserError("/trace on|off")
    chat.trace = argument == "on"
    chat.print(f"[dim]Trace {argument}.[/dim]")


def stats(chat: ChatControls, argument: str) -> None:
    last = chat.last
    chat.print(f"[dim]{format_stats(last) if last else 'No reply yet.'}[/dim]")


def undo(chat: ChatControls, argument: str) -> None:
    exchange = chat.undo()
    chat.print(f"[dim]Forgot: {exchange.user!r}[/dim]" if exchange else "[dim]Nothing to undo.[/dim]")


def regenerate(chat: ChatControls, argument: str) -> None:
    exchange = chat.undo()
    if exchange is None:
        raise UserError("/regen: no reply to regenerate yet")
    chat.turn(exchange.user)


def save(chat: ChatControls, argument: str) -> None:
    if not argument:
        raise UserError("/save FILE")
    path = Path(argument).expanduser()
    write_transcript(path, chat.conversation, chat.model.path, chat.delete_token, chat.settings)
    chat.print(f"[dim]Saved {len(chat.conversation.exchanges)} exchanges to {path}.[/dim]")


Command = Callable[[ChatControls, str], None]
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


def run_command(chat: ChatControls, line: str) -> None:
    name, _, argument = line.strip().partition(" ")
    entry = COMMANDS.get(name)
    if entry is None:
        raise UserError(f"unknown command {name}; /help lists them")
    entry[0](chat, argument.strip())
