"""The official `openai` Python package against `backspace serve`: chat and completions, streamed and not,
the edit stream through extra_body, and a bad request as the client's own error."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="the test extra is not installed: pip install -e '.[test]'")

from serve_client import OPENAI_FINISH, running_server  # noqa: E402

QUESTION = [{"role": "user", "content": "What is 12+7?"}]
SERVE_DOCS = Path(__file__).parent.parent / "docs" / "serve.md"


@pytest.fixture(scope="module")
def client():
    with running_server("--logit-bias", "<|delete|>=10", "--api-key", "sesame") as server:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sesame", max_retries=0) as client:
            yield client


def test_the_client_lists_the_model(client):
    assert [model.id for model in client.models.list()] == ["backspace-tiny"]


def test_a_chat_completion(client):
    reply = client.chat.completions.create(model="backspace-tiny", messages=QUESTION)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == OPENAI_FINISH[reply.choices[0].backspace["finish_reason"]]
    assert reply.choices[0].message.content == reply.choices[0].backspace["text"]
    assert reply.usage.completion_tokens == reply.choices[0].backspace["tokens"]
    assert reply.usage.deletes > 0  # an extra field, kept by the client


def test_a_streamed_chat_completion_appends_to_the_final_text(client):
    chunks = list(client.chat.completions.create(model="backspace-tiny", messages=QUESTION, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    done = chunks[-2].choices[0]
    assert done.finish_reason == OPENAI_FINISH[done.backspace["finish_reason"]] and text == done.backspace["text"]
    assert chunks[-1].usage.deletes == done.backspace["deletes"] > 0


def test_the_edit_stream_through_extra_body(client):
    pieces, done = [], None
    stream = client.chat.completions.create(model="backspace-tiny", messages=QUESTION, stream=True,
                                            extra_body={"edit_stream": True})
    for chunk in stream:
        edit = getattr(chunk.choices[0], "backspace", None) or {"type": None}  # text-only chunks have none
        if edit["type"] == "token":
            pieces.append(edit["text"])
        elif edit["type"] == "delete":
            assert pieces.pop() == edit["text"]
        elif edit["type"] == "done":
            done = edit
    assert "".join(pieces) == done["text"] and done["deletes"] > 0


def test_completions_whole_and_streamed(client):
    whole = client.completions.create(model="backspace-tiny", prompt="12+7=", max_tokens=8)
    assert whole.object == "text_completion" and whole.choices[0].text == whole.choices[0].backspace["text"]
    chunks = list(client.completions.create(model="backspace-tiny", prompt="12+7=", max_tokens=8, stream=True))
    assert "".join(chunk.choices[0].text for chunk in chunks) == chunks[-1].choices[0].backspace["text"]


def test_a_bad_request_is_the_clients_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="backspace-tiny", messages=[])
    assert raised.value.status_code == 400 and "messages" in raised.value.message


def test_a_wrong_key_is_the_clients_authentication_error(client):
    with pytest.raises(openai.AuthenticationError):
        client.with_options(api_key="open").chat.completions.create(model="backspace-tiny", messages=QUESTION)


def test_the_docs_openai_example_runs_against_the_server():
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", SERVE_DOCS.read_text(), re.DOTALL)
                  if "from openai import OpenAI" in block]
    with running_server("--logit-bias", "<|delete|>=10") as server:
        code = example.replace("http://127.0.0.1:8080", server.url)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *text, deletes = result.stdout.split()  # the reply, then its deletes
    assert text and int(deletes) > 0
