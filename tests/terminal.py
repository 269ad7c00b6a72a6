"""A real terminal for tests: tmux runs a program; send-keys types into it, capture-pane reads the screen."""
import itertools
import re
import shlex
import subprocess
import time

_sockets = itertools.count()


class Terminal:
    def __init__(self, command: list[str], env: dict[str, str], width: int = 100, height: int = 30) -> None:
        self.socket = f"backspace-test-{time.monotonic_ns()}-{next(_sockets)}"
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        # The shell reports the exit status, then stays, so the final screen can still be read.
        script = f"env {exports} {shlex.join(command)}; echo EXIT:$?; sleep 600"
        self._tmux("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "main", script)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "main", "-l", text)

    def press(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "main", *keys)

    def paste(self, text: str) -> None:
        """Paste as a terminal does: bracketed, when the program asked for it."""
        self._tmux("set-buffer", "--", text)
        self._tmux("paste-buffer", "-p", "-t", "main")

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "main", "-x", str(width), "-y", str(height))

    def screen(self, styles: bool = False) -> str:
        return self._tmux("capture-pane", "-t", "main", "-p", *(["-e"] if styles else []))

    def wait_for(self, pattern: str, timeout: float = 120, styles: bool = False) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.screen(styles))
            if match:
                return match
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} never appeared; the screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
