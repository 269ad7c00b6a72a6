"""`backspace chat`: the interactive loop in a terminal, and the one-shot answer for pipes and arguments."""
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.prompt import Confirm
from rich.text import Text

from .chat import Chat, MessageTooLong
from .commands import ExitChat, run_command
from .conversation import Conversation, Exchange
from .line_input import ChatInput, history_path
from .transcript_file import SavedChat, read_transcript, write_transcript
from backspace_convert.errors import UserError
from backspace_convert.keys import DeleteToken
from ..engine.chat_template import ChatTemplate, TemplateError
from ..engine.events import Done
from ..render.renderers import LiveRenderer, format_stats, render_reply
from ..engine.llama_hooks import ABORTS
from ..engine.model import Model
from ..engine.session import Session
from ..introduction import Introduction
from ..settings import Settings


class Repl:
    """The loop in a terminal; it gives the slash commands their ChatControls."""

    def __init__(self, console: Console, chat: Chat, trace: bool, reader: ChatInput) -> None:
        self.console, self.chat, self.trace, self.reader = console, chat, trace, reader

    @property
    def settings(self) -> Settings:
        return self.chat.session.settings

    @property
    def conversation(self) -> Conversation:
        return self.chat.conversation

    @property
    def model(self) -> Model:
        return self.chat.session.model

    @property
    def delete_token(self) -> DeleteToken | None:
        return self.chat.session.delete_token

    @property
    def template_source(self) -> str:
        return self.chat.template.source

    @property
    def last(self) -> Done | None:
        return self.chat.last

    def print(self, renderable: object) -> None:
        self.console.print(renderable)

    def undo(self) -> Exchange | None:
        return self.chat.undo()

    def banner(self) -> None:
        session = self.chat.session
        delete = session.delete_token
        status = f"delete token {delete.text!r}" if delete else "no delete token: plain generation"
        self.console.print(f"[bold]backspace[/bold] · {session.model.path.name} · {status}")
        introduction = Introduction.of(session.model.metadata)
        if introduction.description:
            self.console.print(Text(introduction.description))
        if introduction.examples:
            examples = "".join(f"\n  {example}" for example in introduction.examples)
            self.console.print(Text(f"Ask it, for example:{examples}"))
        self.console.print('[dim]/help for commands, """ for a multi-line message, Ctrl-D to leave.[/dim]')

    def show_history(self, source: Path) -> None:
        """A resumed conversation, dim, as it was typed and answered."""
        exchanges = self.conversation.exchanges
        self.console.print(f"[dim]Resumed {len(exchanges)} exchange(s) from {source}:[/dim]", highlight=False)
        for exchange in exchanges:
            self.console.print(Text(f">>> {exchange.user}\n{exchange.reply}", style="dim"))

    def loop(self) -> None:
        while True:
            try:
                text = self.reader.read()
            except KeyboardInterrupt:
                self.console.print("[dim](Ctrl-C stops a reply. To leave, type /exit or press Ctrl-D.)[/dim]")
                continue
            except EOFError:
                return
            if not text.strip():
                continue
            if text.lstrip().startswith("/"):
                try:
                    run_command(self, text)
                except ExitChat:
                    return
                except UserError as error:
                    self.console.print(f"[red]{error}[/red]")
                continue
            self.turn(text)

    def turn(self, message: str) -> None:
        def dropped(count: int) -> None:
            self.console.print(f"[yellow]Dropped the {count} oldest exchange(s) to fit the context.[/yellow]")

        try:
            with LiveRenderer(self.console, self.chat.session.rewind_window, self.trace) as renderer:
                turn = self.chat.say(message, renderer, dropped)
        except MessageTooLong as error:
            self.console.print(f"[red]{error}[/red]")
            return
        except TemplateError as error:
            self.console.print(f"[red]{error}[/red]")
            if self.chat.template.source != "ChatML" and Confirm.ask("Go on with ChatML instead?", console=self.console):
                self.chat.template = ChatTemplate(self.model, chatml=True)
                self.turn(message)
            return
        except KeyboardInterrupt:  # between the reply's end and here: the reply is complete
            return
        self.console.print(f"[dim]{format_stats(turn.done)}[/dim]")


def resume_command(path: Path, argv: list[str]) -> str:
    """The command that goes on with the conversation saved at `path`: this one's options (the model, the
    servers, the settings) with `--resume PATH` in place of any it had."""
    kept, skip = [], False
    for argument in argv[1:]:
        if skip or argument == "--resume" or argument.startswith("--resume="):
            skip = argument == "--resume"
            continue
        kept.append(argument)
    return shlex.join(["backspace", *kept, "--resume", str(path)])


def _note_another_model(console: Console, resumed: SavedChat, session: Session) -> None:
    if resumed.held_with_another_model(session.model.path):
        console.print(Text(f"This conversation was held with {resumed.model}; it goes on with {session.model.path}.",
                           style="dim"), soft_wrap=True)


def run_chat(settings: Settings, system: str | None, trace: bool, resume: Path | None = None) -> None:
    resumed = read_transcript(resume) if resume else None  # before the model loads: a bad file costs no wait
    console = Console()
    with console.status("Loading the model…"):
        session = Session(settings)
    chat = Chat(session, system, resumed.conversation if resumed else None)
    repl = Repl(console, chat, trace, ChatInput(history_path()))

    def keep_conversation() -> str:  # llama.cpp is ending the process (say, an rpc-server died mid-reply)
        path = history_path().parent / "aborted-chat.json"
        write_transcript(path, repl.conversation, repl.model.path, repl.delete_token, repl.settings)
        return f"the conversation so far is saved in {path}; to go on with it: {resume_command(path, sys.argv)}"

    ABORTS.last_words = keep_conversation
    repl.banner()
    if resumed:
        _note_another_model(console, resumed, session)
        repl.show_history(resume)
    repl.loop()


def run_once(settings: Settings, system: str | None, message: str, output_format: str, trace: bool,
             resume: Path | None = None) -> Done:
    """Answer one message (after a resumed conversation, if given), writing the reply (in a pipe: only the
    clean final reply) to stdout."""
    resumed = read_transcript(resume) if resume else None
    session = Session(settings)
    if resumed:
        _note_another_model(Console(stderr=True), resumed, session)
    chat = Chat(session, system, resumed.conversation if resumed else None)
    return render_reply(
        output_format, trace, session.delete_token is not None, session.rewind_window,
        lambda renderer: chat.say(message, renderer, on_drop=lambda count: None).done,
    )
