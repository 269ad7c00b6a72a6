"""The Python API at the package's root: load, stream_generate and generate, on the built-in model."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import backspace_cli
from backspace_cli import Delete, Done, Token
from backspace_cli.engine.chat_template import ChatTemplate

README = Path(__file__).parent.parent / "README.md"
QUESTION = [{"role": "user", "content": "Which two of 12 3 7 5 15 add up to 19?"}]


@pytest.fixture(scope="module")
def model():
    return backspace_cli.load(seed=6)  # the model's recommended sampling: greedy, a search that backs out of 5+14


def replay(events) -> str:
    pieces = []
    for event in events:
        if isinstance(event, Token):
            pieces.append(event.text)
        elif isinstance(event, Delete):
            assert pieces.pop() == event.text
    return "".join(pieces)


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (example,) = [block for block in blocks if "import backspace_cli" in block]
    return example


def test_the_readme_example_streams_events_and_prints_the_answer():
    result = subprocess.run([sys.executable, "-c", readme_example()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    *events, done, answer = result.stdout.splitlines()
    pieces = []
    for line in events:
        kind, text = re.fullmatch(r"(Token|Delete)\(id=\d+, text=('.*')\)", line).groups()
        if kind == "Token":
            pieces.append(ast.literal_eval(text))
        else:
            assert pieces.pop() == ast.literal_eval(text)
    final = re.match(r"Done\(finish_reason='stop', text=('[^']*')", done).group(1)
    assert "".join(pieces) == ast.literal_eval(final)
    assert re.fullmatch(r"\d+\+\d+", ast.literal_eval(final)) and re.fullmatch(r"\d+\+\d+", answer)


def test_the_streamed_events_replay_to_the_final_text(model):
    events = list(backspace_cli.stream_generate(model, QUESTION))
    *edits, done = events
    assert isinstance(done, Done) and not any(isinstance(event, Done) for event in edits)
    assert done.counts.deletes == sum(isinstance(event, Delete) for event in edits) > 0  # this question makes it back out
    assert replay(edits) == done.text


def test_generate_gives_the_streams_done_record(model):
    streamed = list(backspace_cli.stream_generate(model, QUESTION))[-1]
    done = backspace_cli.generate(model, QUESTION)
    assert (done.text, done.finish_reason, done.counts) == (streamed.text, streamed.finish_reason, streamed.counts)


def test_messages_go_through_the_models_chat_template_and_a_string_is_raw_text():
    messages = [{"role": "user", "content": "Which two of 12 3 7 5 add up to 19?"}]
    greedy = backspace_cli.load(temp=0)
    chat = backspace_cli.generate(greedy, messages)
    assert chat.counts.prompt_tokens == len(ChatTemplate(greedy.model).tokens(messages))
    assert chat.text == "7+12"
    raw = backspace_cli.generate(greedy, "Which two of 12 3 7 5 add up to 19?")
    assert raw.counts.prompt_tokens == len(greedy.model.tokenize("Which two of 12 3 7 5 add up to 19?", add_bos=True))


def test_load_opens_a_given_model_with_the_given_settings(tiny_llama_path):
    session = backspace_cli.load(str(tiny_llama_path), temp=0, max_tokens=3)
    assert session.model.path == Path(tiny_llama_path)
    assert session.settings.temp == 0 and backspace_cli.generate(session, "the water").counts.tokens <= 3


def test_only_the_api_is_public():
    assert set(backspace_cli.__all__) == {"load", "stream_generate", "generate", "Token", "Delete", "Done"}
    with pytest.raises(AttributeError, match="no attribute 'Session'"):
        backspace_cli.Session
