"""A chat template comes from the model file, so it is untrusted code: whatever it does, chat (one-shot, piped
and in a terminal), synth and eval answer with one line that names the template, quickly, and never a traceback."""
import json
import re
import sys
import time

import pytest
from click.testing import CliRunner

import tiny_models
from backspace_cli import defaults
from backspace_cli.cli.main import main
from backspace_cli.engine.chat_template import ChatTemplate, TemplateError
from backspace_cli.engine.model import load_model
from terminal import Terminal

HOSTILE = {
    "raises": ('{{ raise_exception("nope") }}', "the chat template (the model's) failed: nope"),
    # Whichever limit it meets first, the size or the deadline.
    "loops": ("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
              "the chat template (the model's) "),
    "loops_silently": ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
                       "the chat template (the model's) took more than"),
    "renders_100_mb": ("{{ 'x' * 100000000 }}", "the chat template (the model's) made more than"),
    "renders_100_mb_in_a_loop": ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}",
                                 "the chat template (the model's) made more than"),
    "escapes_the_sandbox": ("{{ ''.__class__.__mro__[1].__subclasses__() }}",
                            "the chat template (the model's) failed: access to attribute '__class__'"),
    "fails_on_the_messages": ("{{ messages[0].content.upper().nope() }}", "the chat template (the model's) failed"),
}
# The deadline: shortened so that the suite stays quick; a real template needs milliseconds.
SECONDS = 1.0


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    directory = tmp_path_factory.mktemp("templates")
    return {name: tiny_models.build_llama(directory / f"{name}.gguf", chat_template=template)
            for name, (template, _) in HOSTILE.items()}


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch):
    monkeypatch.setattr(defaults, "TEMPLATE_SECONDS", SECONDS)


def refused_in_one_line(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", HOSTILE)
def test_one_shot_and_piped_chat_answer_with_one_line_quickly(hostile, name):
    message = HOSTILE[name][1]
    for args, stdin in ((["What is 1+1?"], None), ([], "What is 1+1?")):
        start = time.monotonic()
        result = CliRunner().invoke(main, ["chat", "-m", str(hostile[name]), "-n", "4", *args], input=stdin)
        assert time.monotonic() - start < SECONDS + 20  # loading included, on a shared machine; unbounded is hours
        refused_in_one_line(result, message)


@pytest.mark.parametrize("name", ["raises", "loops", "renders_100_mb"])
def test_synth_and_eval_name_the_template_too(hostile, tmp_path, name):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"messages": [{"role": "user", "content": "1+1"},
                                                {"role": "assistant", "content": "2"}]}) + "\n")
    result = CliRunner().invoke(main, ["synth", str(samples), "--tokenizer", str(hostile[name]), "-q"])
    refused_in_one_line(result, "line 1: " + HOSTILE[name][1])
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"prompt": "1+1", "answer": "2"}) + "\n")
    result = CliRunner().invoke(main, ["eval", str(tasks), "-m", str(hostile[name]), "-n", "2", "-t", "2"])
    refused_in_one_line(result, HOSTILE[name][1])


def test_the_real_deadline_stops_a_silent_loop(hostile, monkeypatch):
    monkeypatch.undo()
    template = ChatTemplate(load_model(hostile["loops_silently"], n_ctx=128, n_threads=1))
    start = time.monotonic()
    with pytest.raises(TemplateError, match=f"took more than {defaults.TEMPLATE_SECONDS:g} s"):
        template.render([{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < defaults.TEMPLATE_SECONDS + 2


def test_a_template_that_does_not_parse_is_one_line_at_load(tmp_path):
    path = tiny_models.build_llama(tmp_path / "model.gguf", chat_template="{% for %}")
    result = CliRunner().invoke(main, ["chat", "-m", str(path), "hi"])
    refused_in_one_line(result, "the model's chat template does not parse (Expected an expression")


def test_a_good_template_renders_as_before(tiny_llama):
    text = ChatTemplate(tiny_llama).render([{"role": "user", "content": "hi"}])
    assert text == "<|user|>hi</s><|assistant|>"


def test_chat_in_a_terminal_offers_chatml_and_goes_on(tmp_path, hostile):
    command = [sys.executable, "-m", "backspace_cli", "chat", "-m", str(hostile["raises"]), "-n", "4", "-t", "2"]
    terminal = Terminal(command, env={"XDG_STATE_HOME": str(tmp_path)})
    try:
        terminal.wait_for(r"(?m)^>>>$")
        terminal.type("What is 1+1?")
        terminal.press("Enter")
        terminal.wait_for(re.escape("the chat template (the model's) failed: nope"))
        terminal.wait_for(re.escape("Go on with ChatML instead? [y/n]"))
        terminal.type("y")
        terminal.press("Enter")
        terminal.wait_for(r"reply \d+ tok")
        assert "Traceback" not in terminal.screen()
    finally:
        terminal.close()
