"""`backspace chat`: the interactive loop in a terminal, and the one-shot answer for pipes and arguments."""
from rich.console import Console
from rich.prompt import Confirm

from .chat import Chat, MessageTooLong
from .commands import ExitChat, run_command, write_transcript
from .conversation import Conversation, Exchange
from .line_input import ChatInput, history_path
from backspace_convert.errors import UserError
from backspace_convert.keys import DeleteToken
from ..engine.chat_template import ChatTemplate, TemplateError
from ..engine.events import Done
from ..render.renderers import LiveRenderer, format_stats, render_reply
from ..engine.model import ABORTS, Model
from ..engine.session import Session
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
        self.console.print('[dim]/help for commands, """ for a multi-line message, Ctrl-D to leave.[/dim]')

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


def run_chat(settings: Settings, system: str | None, trace: bool) -> None:
    console = Console()
    with console.status("Loading the model…"):
        session = Session(settings)
    repl = Repl(console, Chat(session, system), trace, ChatInput(history_path()))

    def keep_conversation() -> str:  # llama.cpp is ending the process (say, an rpc-server died mid-reply)
        path = history_path().parent / "aborted-chat.json"
        write_transcript(repl, path)
        return f"the conversation so far is saved in {path}"

    ABORTS.last_words = keep_conversation
    repl.banner()
    repl.loop()


def run_once(settings: Settings, system: str | None, message: str, output_format: str, trace: bool) -> Done:
    """Answer one message, writing the reply (in a pipe: only the clean final reply) to stdout."""
    session = Session(settings)
    chat = Chat(session, system)
    return render_reply(
        output_format, trace, session.delete_token is not None, session.rewind_window,
        lambda renderer: chat.say(message, renderer, on_drop=lambda count: None).done,
    )
