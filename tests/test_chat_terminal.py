"""`backspace chat` as a person meets it: in a real terminal, typing, watching deletes, pressing Ctrl-C."""
import json
import re
import sys

import pytest

from terminal import Terminal

STRUCK = r"\x1b\[(?:\d+;)*9(?:;\d+)*m"  # SGR 9: struck-through text
STATS = r"reply \d+ tok, (\d+) deletes"
PROMPT = r"(?m)^>>>$"  # capture-pane drops the prompt's trailing space


@pytest.fixture
def chat_terminal(tmp_path):
    terminals = []

    def start(*args: str) -> Terminal:
        command = [sys.executable, "-m", "backspace_cli", "chat", *map(str, args)]
        terminal = Terminal(command, env={"XDG_STATE_HOME": str(tmp_path)})
        terminals.append(terminal)
        terminal.wait_for(PROMPT)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def test_a_reply_streams_deletes_erase_text_and_trace_keeps_it(chat_terminal, tiny_llama_path):
    terminal = chat_terminal("-m", tiny_llama_path, "--logit-bias", "<|delete|>=100", "--temp", "0", "-n", "12")
    terminal.type("the water")
    terminal.press("Enter")
    deletes = int(terminal.wait_for(STATS).group(1))
    assert deletes > 0
    assert not re.search(STRUCK, terminal.screen(styles=True))  # erased text is gone once the reply ends

    terminal.type("/trace on")
    terminal.press("Enter")
    terminal.wait_for("Trace on.")
    terminal.type("the water")
    terminal.press("Enter")
    terminal.wait_for(rf"(?s){STATS}.*{STATS}")
    assert re.search(STRUCK, terminal.screen(styles=True))  # in trace mode the deleted pieces stay

    terminal.press("C-c")
    terminal.wait_for("To leave, type /exit")
    terminal.type("/exit")
    terminal.press("Enter")
    terminal.wait_for("EXIT:0")


def test_a_resize_and_ctrl_c_during_a_reply_keep_it_and_ctrl_d_leaves(chat_terminal, smollm2_path):
    terminal = chat_terminal("-m", smollm2_path, "-n", "2000", "--seed", "1")
    terminal.type("Tell me a very long story about the sea.")
    terminal.press("Enter")
    terminal.wait_for(r"sea\.\n\S+ \S+ \S+")  # the reply has started streaming
    terminal.resize(60, 20)
    terminal.wait_for(r"sea\.\n(\S+\s+){12}")  # and goes on streaming (and wrapping) in the narrower terminal
    terminal.press("C-c")
    terminal.wait_for(r"(?m)interrupted\n>>>$")  # the partial reply stays, and the prompt is back
    terminal.type("/show")
    terminal.press("Enter")
    terminal.wait_for("repeat_penalty")  # /show's last row: the chat still answers after the resize
    terminal.press("C-d")
    terminal.wait_for("EXIT:0")
    assert "Traceback" not in terminal.screen()


def test_multi_line_messages_and_history_that_outlives_the_session(chat_terminal, tiny_llama_path, tmp_path):
    args = ("-m", tiny_llama_path, "--temp", "0", "-n", "4")
    terminal = chat_terminal(*args)
    terminal.type('"""')
    terminal.press("Enter")
    for line in ("fenced one", "fenced two", '"""'):
        terminal.type(line)
        terminal.press("Enter")
    terminal.wait_for(STATS)
    terminal.paste("pasted one\npasted two")
    terminal.press("Enter")
    terminal.wait_for(rf"(?s){STATS}.*{STATS}")
    saved = tmp_path / "session.json"
    terminal.type(f"/save {saved}")
    terminal.press("Enter")
    terminal.wait_for("Saved 2 exchanges")
    users = [exchange["user"] for exchange in json.loads(saved.read_text())["exchanges"]]
    assert users == ["fenced one\nfenced two", "pasted one\npasted two"]
    terminal.press("C-d")
    terminal.wait_for("EXIT:0")

    again = chat_terminal(*args)  # a new session, the same state directory
    again.press("Up")
    again.wait_for(r"(?m)^>>> /save ")
