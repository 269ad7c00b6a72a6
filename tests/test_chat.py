"""Chat: templates, multi-turn cache reuse, the context budget, slash commands and one-shot answers."""
import codecs
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from backspace_cli.chat.chat import Chat, MessageTooLong
from backspace_cli.chat.commands import run_command
from backspace_cli.chat.repl import Repl
from backspace_cli.cli.main import main
from backspace_convert.errors import UserError
from backspace_cli.engine.session import Session
from backspace_cli.settings import Settings


def open_chat(path, system=None, **settings) -> Chat:
    defaults = dict(model=str(path), temp=0.0, max_tokens=12, ctx_size=512, threads=2)
    return Chat(Session(Settings(**{**defaults, **settings})), system=system)


def say(chat: Chat, message: str):
    return chat.say(message, lambda event: None, lambda count: None)


def test_the_prompt_comes_from_the_models_own_template(tiny_llama_path):
    chat = open_chat(tiny_llama_path)
    tokens = chat.template.tokens([{"role": "user", "content": "hi"}])
    assert tokens == chat.session.model.tokenize("<|user|>hi</s><|assistant|>", add_bos=False, special=True)
    assert "the model's" in chat.template.source


def test_a_model_without_a_template_falls_back_to_chatml(tmp_path, tiny_models_module):
    path = tiny_models_module.build_llama(tmp_path / "no-template.gguf", chat_template=None)
    chat = open_chat(path)
    assert "ChatML" in chat.template.source
    tokens = chat.template.tokens([{"role": "user", "content": "hi"}])
    expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokens == chat.session.model.tokenize(expected, add_bos=False, special=True)


@pytest.fixture
def tiny_models_module():
    import tiny_models

    return tiny_models


def test_each_turn_evaluates_only_the_new_tokens(smollm2_path):
    chat = open_chat(smollm2_path, max_tokens=8)
    first = say(chat, "What is water made of?")
    second = say(chat, "And ice?")
    assert first.done.counts.evaluated_prompt_tokens == first.done.counts.prompt_tokens
    new_part = second.done.counts.prompt_tokens - first.done.counts.prompt_tokens - first.done.counts.tokens
    assert second.done.counts.evaluated_prompt_tokens <= new_part + 2  # a re-tokenised seam at most


def test_history_holds_the_final_reply_and_the_cache_agrees_with_it(tiny_llama_path):
    chat = open_chat(tiny_llama_path, temp=0.8, seed=3, logit_bias=[("<|delete|>", 100.0)], max_tokens=20)
    turn = say(chat, "the water")
    assert turn.done.counts.deletes > 0
    assert chat.conversation.exchanges[-1].reply == turn.done.text
    deleted = [edit for edit in turn.exchange.edits if edit["type"] == "delete"]
    assert len(deleted) == turn.done.counts.deletes
    prompt = chat.template.tokens(chat.conversation.messages()[:-1])
    sequence = chat.session.engine.sequence.tokens
    assert sequence[: len(prompt)] == prompt
    reply_bytes = chat.session.model.llama.detokenize(sequence[len(prompt):])
    # Decoded as the engine does: bytes that end the reply mid-character are not text yet.
    reply = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(reply_bytes)
    assert reply == turn.done.text


def test_the_oldest_exchanges_are_dropped_to_fit_but_never_the_system_prompt(tiny_llama_path):
    chat = open_chat(tiny_llama_path, ctx_size=256, max_tokens=16, system="be brief")
    notices = []
    turns = [chat.say("the water is made of the water", lambda event: None, notices.append) for _ in range(12)]
    assert sum(notices) > 0 and sum(turn.dropped for turn in turns) == sum(notices)
    assert all(turn.done.counts.prompt_tokens + chat.reply_room() <= 256 for turn in turns)
    assert chat.conversation.messages()[0] == {"role": "system", "content": "be brief"}


def test_a_message_too_long_for_the_context_is_refused_and_the_chat_goes_on(tiny_llama_path):
    chat = open_chat(tiny_llama_path, ctx_size=256)
    say(chat, "the water")
    with pytest.raises(MessageTooLong, match="the context holds 256"):
        say(chat, "the water " * 200)
    assert len(chat.conversation.exchanges) == 1
    assert say(chat, "the water").done.finish_reason in ("stop", "length")


@pytest.fixture
def repl(tiny_llama_path):
    console = Console(record=True, width=120)
    return Repl(console, open_chat(tiny_llama_path, logit_bias=[("<|delete|>", 100.0)], temp=0.8, seed=2),
                trace=False, reader=None)


def test_slash_commands_change_the_chat(repl, tmp_path):
    run_command(repl, "/set temp 0.5")
    assert repl.chat.session.settings.temp == 0.5
    run_command(repl, "/system you are terse")
    assert repl.chat.conversation.system == "you are terse"
    run_command(repl, "/trace on")
    assert repl.trace
    repl.turn("the water")
    repl.turn("is made of")
    run_command(repl, "/undo")
    assert [e.user for e in repl.chat.conversation.exchanges] == ["the water"]
    run_command(repl, "/regen")
    assert [e.user for e in repl.chat.conversation.exchanges] == ["the water"]
    run_command(repl, "/show")
    run_command(repl, "/stats")
    shown = repl.console.export_text()
    assert "temp" in shown and "0.5" in shown and "delete token" in shown and "deletes" in shown
    run_command(repl, "/clear")
    assert repl.chat.conversation.exchanges == []


def test_save_writes_the_transcript_with_every_delete(repl, tmp_path):
    repl.turn("the water")
    path = tmp_path / "chat.json"
    run_command(repl, f"/save {path}")
    saved = json.loads(path.read_text())
    exchange = saved["exchanges"][0]
    assert exchange["user"] == "the water"
    assert exchange["reply"] == repl.chat.conversation.exchanges[0].reply
    assert any(edit["type"] == "delete" for edit in exchange["edits"])
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize("line, message", [("/set nope 1", "unknown key"), ("/set temp hot", "not a float"),
                                           ("/frobnicate", "unknown command"), ("/trace maybe", "/trace on|off"),
                                           ("/save /nonexistent/dir/x.json", "output directory does not exist")])
def test_bad_slash_commands_are_explained(repl, line, message):
    with pytest.raises(UserError, match=message):
        run_command(repl, line)


@pytest.mark.parametrize("key, value, reason", [
    ("top_p", "7", "7 is not between 0 and 1"), ("min_p", "-0.5", "-0.5 is not between 0 and 1"),
    ("temp", "-1", "-1 is not at least 0"), ("top_k", "2.5", "'2.5' is not an integer"),
    ("max_tokens", "0", "0 is not at least 1"), ("repeat_penalty", "0", "0 is not above 0"),
    ("max_deletes", "-1", "-1 is not at least 0"),
])
def test_set_and_the_command_line_refuse_the_same_values_in_the_same_words(repl, key, value, reason,
                                                                           tiny_llama_path):
    before = getattr(repl.settings, key)
    with pytest.raises(UserError) as refused:
        run_command(repl, f"/set {key} {value}")
    assert str(refused.value) == f"/set {key}: {reason}"
    assert getattr(repl.settings, key) == before
    option = f"--{key.replace('_', '-')}"
    result = CliRunner().invoke(main, ["chat", "-m", str(tiny_llama_path), option, value, "the water"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "Invalid value for " in result.stderr and f"{option}': {reason}\n" in result.stderr


def test_set_top_p_7_is_refused_in_one_line_and_the_chat_goes_on(repl):
    class Typed:
        lines = ["/set top_p 7", "/set top_p 0.5"]

        def read(self):
            if not self.lines:
                raise EOFError
            return self.lines.pop(0)

    before = repl.settings.top_p
    repl.reader = Typed()
    repl.loop()
    assert repl.console.export_text().splitlines() == ["/set top_p: 7 is not between 0 and 1", "top_p = 0.5"]
    assert before != 0.5 and repl.settings.top_p == 0.5


def test_one_shot_chat_writes_the_clean_reply(tiny_llama_path):
    runner = CliRunner()
    by_argument = runner.invoke(main, ["chat", "-m", str(tiny_llama_path), "--temp", "0", "-n", "8", "the water"])
    by_pipe = runner.invoke(main, ["chat", "-m", str(tiny_llama_path), "--temp", "0", "-n", "8"], input="the water\n")
    jsonl = runner.invoke(main, ["chat", "-m", str(tiny_llama_path), "--temp", "0", "-n", "8", "--format", "jsonl",
                                 "the water"])
    assert by_argument.exit_code == by_pipe.exit_code == jsonl.exit_code == 0
    done = json.loads(jsonl.stdout.splitlines()[-1])
    assert by_argument.stdout == by_pipe.stdout == done["text"] + ("" if done["text"].endswith("\n") else "\n")
    assert "\x1b" not in by_argument.stdout


def test_without_a_model_option_the_built_in_model_answers():
    result = CliRunner().invoke(main, ["chat", "--temp", "0", "Which two of 3 8 5 1 add up to 13?"],
                                env={"BACKSPACE_MODEL": None})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "5+8\n"


def test_without_a_built_in_model_every_command_asks_for_one_the_same_way(tmp_path, monkeypatch):
    from backspace_cli import default_model

    monkeypatch.setattr(default_model, "DEFAULT_MODEL", tmp_path / "not-installed.gguf")
    monkeypatch.delenv("BACKSPACE_MODEL", raising=False)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"prompt": "1+1", "answer": "2"}\n')
    for args in (["chat", "hi"], ["complete", "hi"], ["eval", str(tasks)], ["synth", str(tasks)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("Error: no model: pass ") and len(result.stderr.splitlines()) == 1
        assert result.stderr.endswith(" (this install has no built-in model)\n"), result.stderr


def test_the_context_is_capped_at_what_the_model_was_trained_on():
    from backspace_cli.default_model import default_model_path
    from backspace_cli.engine.model import load_model

    model = load_model(default_model_path(), n_ctx=4096)
    assert model.n_ctx == int(model.metadata["llama.context_length"]) < 4096


def suggested_questions() -> list[str]:
    """The questions that the built-in model's page suggests asking."""
    text = (Path(__file__).parent.parent / "docs" / "builtin-model.md").read_text()
    block = text.split("Ask it, for example:\n\n```\n", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()


def test_the_suggested_questions_asked_in_one_chat_are_mostly_answered_right():
    """One chat, each reply kept in the history as make chat keeps it: no exchange is dropped, at most one
    answer of the four is wrong, and at least one answer visibly deletes on its way."""
    chat = Chat(Session(Settings()))
    right, deletes = 0, 0
    for question in suggested_questions():
        *numbers, target = (int(number) for number in re.findall(r"\d+", question))
        (pair,) = [(a, b) for i, a in enumerate(numbers) for b in numbers[i + 1:] if a + b == target]
        turn = chat.say(question, handle=lambda event: None, on_drop=lambda count: None)
        assert turn.dropped == 0
        right += turn.done.text == "{}+{}".format(*sorted(pair))
        deletes += turn.done.counts.deletes
    assert len(suggested_questions()) == 4 and right >= 3 and deletes > 0
