"""Reading chat input: line editing, persistent history, pasted and \"\"\"-fenced multi-line messages."""
import os
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory

FENCE = '"""'


def history_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "backspace" / "history"


class ChatInput:
    """Like input(): Ctrl-D raises EOFError and Ctrl-C raises KeyboardInterrupt.

    prompt_toolkit turns on bracketed paste, so pasted multi-line text arrives as one message.
    """

    def __init__(self, history: Path) -> None:
        history.parent.mkdir(parents=True, exist_ok=True)
        self._session = PromptSession(history=FileHistory(str(history)))
        self._continuation = PromptSession()  # fenced lines stay out of the history

    def read(self) -> str:
        text = self._session.prompt(">>> ")
        if text.strip() != FENCE:
            return text
        lines = []
        while (line := self._continuation.prompt("... ")).strip() != FENCE:
            lines.append(line)
        return "\n".join(lines)
