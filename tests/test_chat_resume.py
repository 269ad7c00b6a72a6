"""`chat --resume FILE`: a transcript that /save (or a chat that llama.cpp ended) wrote gives the model the same
history again, whatever model and settings the command line names; a file that is not one is refused in one line."""
import json
import sys

import pytest
from click.testing import CliRunner
from rich.console import Console

from backspace_cli.chat.chat import Chat
from backspace_cli.chat.commands import run_command
from backspace_cli.chat.transcript_file import read_transcript
from backspace_cli.chat.repl import Repl, resume_command
from backspace_cli.cli.main import main
from backspace_cli.engine.session import Session
from backspace_cli.settings import Settings
from terminal import Terminal
from test_chat import open_chat, say

SETTINGS = dict(temp=0.8, seed=2, logit_bias=[("<|delete|>", 100.0)], max_tokens=12, ctx_size=512, threads=2)


@pytest.fixture
def saved(tiny_llama_path, tmp_path):
    """A chat of two exchanges, with deletes, as /save wrote it; and the chat itself."""
    chat = open_chat(tiny_llama_path, system="be brief", **SETTINGS)
    repl = Repl(Console(record=True), chat, trace=False, reader=None)
    repl.turn("the water")
    repl.turn("is made of")
    path = tmp_path / "chat.json"
    run_command(repl, f"/save {path}")
    return path, chat


def test_a_resumed_chat_gives_the_model_the_saved_history(saved, tiny_llama_path):
    path, original = saved
    resumed = Chat(Session(Settings(model=str(tiny_llama_path), **SETTINGS)),
                   history=read_transcript(path).conversation)
    assert resumed.conversation == original.conversation  # the system prompt, replies and every edit
    assert any(edit["type"] == "delete" for exchange in resumed.conversation.exchanges for edit in exchange.edits)
    expected = original.template.tokens(original.conversation.messages(pending="and ice"))
    assert resumed.template.tokens(resumed.conversation.messages(pending="and ice")) == expected

    turn = say(resumed, "and ice")  # answered with the old exchanges in its context
    assert turn.done.counts.prompt_tokens == len(expected)
    assert resumed.session.engine.sequence.tokens[: len(expected)] == expected
    assert [exchange.user for exchange in resumed.conversation.exchanges] == ["the water", "is made of", "and ice"]


def test_the_command_lines_system_prompt_rules_the_files(saved, tiny_llama_path):
    path, _ = saved
    resumed = Chat(Session(Settings(model=str(tiny_llama_path), **SETTINGS)), system="be long",
                   history=read_transcript(path).conversation)
    assert resumed.conversation.messages()[0] == {"role": "system", "content": "be long"}
    assert len(resumed.conversation.exchanges) == 2


def test_a_one_shot_answer_after_resume_has_the_history_in_its_prompt(saved, tiny_llama_path):
    path, original = saved
    expected = original.template.tokens(original.conversation.messages(pending="and ice"))
    result = CliRunner().invoke(main, ["chat", "-m", str(tiny_llama_path), "--resume", str(path), "--temp", "0",
                                       "-n", "4", "--format", "jsonl", "and ice"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # the same model: nothing to say
    assert json.loads(result.stdout.splitlines()[-1])["prompt_tokens"] == len(expected)


def test_another_model_than_the_files_is_said_in_one_line_and_used(saved, tiny_llama_without_delete_path):
    path, original = saved
    result = CliRunner().invoke(main, ["chat", "-m", str(tiny_llama_without_delete_path), "--resume", str(path),
                                       "--temp", "0", "-n", "4", "and ice"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == (f"This conversation was held with {original.session.model.path}; "
                                             f"it goes on with {tiny_llama_without_delete_path}.")


def test_the_repl_shows_the_resumed_exchanges(saved, tiny_llama_path):
    path, original = saved
    chat = Chat(open_chat(tiny_llama_path).session, history=read_transcript(path).conversation)
    repl = Repl(Console(record=True, width=200), chat, trace=False, reader=None)
    repl.show_history(path)
    shown = repl.console.export_text()
    assert shown.startswith(f"Resumed 2 exchange(s) from {path}:\n>>> the water\n")
    for exchange in original.conversation.exchanges:
        assert f">>> {exchange.user}\n{exchange.reply}" in shown


def test_chat_in_a_terminal_goes_on_from_the_file(saved, tiny_llama_path, tmp_path):
    path, original = saved
    command = [sys.executable, "-m", "backspace_cli", "chat", "-m", str(tiny_llama_path), "--resume", str(path),
               "--temp", "0", "-n", "4"]
    terminal = Terminal(command, env={"XDG_STATE_HOME": str(tmp_path)}, width=200)
    try:
        terminal.wait_for(r"(?m)^>>>$")
        screen = terminal.screen()
        assert "Resumed 2 exchange(s)" in screen and ">>> is made of" in screen
        terminal.type("/save " + str(tmp_path / "again.json"))
        terminal.press("Enter")
        terminal.wait_for("Saved 2 exchanges")
    finally:
        terminal.close()
    assert read_transcript(tmp_path / "again.json").conversation == original.conversation


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    ("{", "not JSON (Expecting property name enclosed in double quotes at line 1)"),
    (b"\xff\xfe", "not JSON (not UTF-8)"),
    ("[]", "not a chat transcript (not a JSON object)"),
    ('{"system": null}', "not a chat transcript (it has no list of exchanges)"),
    ('{"system": 3, "exchanges": []}', "not a chat transcript (its system prompt is not text)"),
    ('{"exchanges": ["hi"]}', "not a chat transcript (exchange 1 is not an object)"),
    ('{"exchanges": [{"user": "hi", "reply": 7}]}',
     "not a chat transcript (exchange 1 lacks its user message or its reply as text)"),
    ('{"exchanges": [{"user": "hi", "reply": "", "edits": [{"type": "paste"}]}]}',
     "not a chat transcript (exchange 1 has a finish_reason or edits of the wrong shape)"),
    ('{"model": 1, "exchanges": []}', "not a chat transcript (its model is not a path)"),
])
def test_a_file_that_is_not_a_transcript_is_refused_in_one_line(tiny_llama_path, tmp_path, content, reason):
    path = tmp_path / "chat.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["chat", "-m", str(tiny_llama_path), "--resume", str(path), "hi"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"Error: cannot resume from {path}: {reason}\n"


def test_a_directory_is_refused_in_one_line(tiny_llama_path, tmp_path):
    result = CliRunner().invoke(main, ["chat", "-m", str(tiny_llama_path), "--resume", str(tmp_path), "hi"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot resume from {tmp_path}: Is a directory\n"


@pytest.mark.parametrize("earlier", [[], ["--resume", "old.json"], ["--resume=old.json"]])
def test_the_command_to_go_on_repeats_the_options_with_the_saved_file(tmp_path, earlier):
    argv = ["/x/backspace_cli/__main__.py", "chat", "-m", "my model.gguf", *earlier, "--rpc", "10.0.0.2:50052"]
    assert resume_command(tmp_path / "aborted-chat.json", argv) == \
           f"backspace chat -m 'my model.gguf' --rpc 10.0.0.2:50052 --resume {tmp_path / 'aborted-chat.json'}"
