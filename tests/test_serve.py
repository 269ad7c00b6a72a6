"""`backspace serve` over HTTP, on the built-in model: the OpenAI routes, deletes in the API, stop strings,
the prefix cache, bad requests and API keys."""
import json
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

import backspace_cli
from backspace_cli.cli.main import main

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from serve_client import OPENAI_FINISH, content, done_record, replay, running_server  # noqa: E402

QUESTION = [{"role": "user", "content": "What is 12+7?"}]
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
# Chat replies always delete under DELETING; a raw continuation may end at once, so only its shapes are checked.
BOTH = [(CHAT, {"messages": QUESTION}), (COMPLETIONS, {"prompt": "12+7="})]
# The server's own bias makes every reply delete, whatever arithmetic the model has learnt.
DELETING = ("--logit-bias", "<|delete|>=10")


@pytest.fixture(scope="module")
def server():
    with running_server(*DELETING) as server:
        yield server


def test_health_and_models_name_the_built_in_model(server):
    status, _, health = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "backspace-tiny"
    status, _, models = server.request("GET", "/v1/models")
    assert status == 200 and [model["id"] for model in models["data"]] == ["backspace-tiny"]


def test_a_chat_completion_gives_the_final_text_with_the_deletes_in_its_usage(server):
    status, _, body = server.post(CHAT, {"model": "anything", "messages": QUESTION})
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "backspace-tiny"
    (choice,) = body["choices"]
    ours, usage = choice["backspace"], body["usage"]
    assert choice["message"] == {"role": "assistant", "content": ours["text"]}
    assert choice["finish_reason"] == OPENAI_FINISH[ours["finish_reason"]]
    assert usage["deletes"] == ours["deletes"] > 0
    assert usage["completion_tokens"] == ours["tokens"]
    assert usage["generated_tokens"] == ours["generated"] >= ours["tokens"] + ours["deletes"] - 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_completion_continues_raw_text(server):
    status, _, body = server.post(COMPLETIONS, {"prompt": "12+7=", "max_tokens": 8})
    assert status == 200 and body["object"] == "text_completion"
    (choice,) = body["choices"]
    assert choice["text"] == choice["backspace"]["text"] and body["usage"]["completion_tokens"] <= 8


@pytest.mark.parametrize("path, body", BOTH)
def test_the_standard_stream_only_ever_appends_final_text(server, path, body):
    chunks = server.stream(path, body)
    done = done_record(chunks)
    assert content(chunks) == done["text"]
    assert [chunk for chunk in chunks if any("backspace" in choice for choice in chunk["choices"])] == [chunks[-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == OPENAI_FINISH[done["finish_reason"]]
    assert len({chunk["id"] for chunk in chunks}) == 1


@pytest.mark.parametrize("path, body", BOTH)
def test_the_edit_stream_replays_to_exactly_the_final_text(server, path, body):
    chunks = server.stream(path, {**body, "edit_stream": True, "stream_options": {"include_usage": True}})
    done, usage = done_record(chunks), chunks[-1]["usage"]
    edits = [choice["backspace"]["type"] for chunk in chunks for choice in chunk["choices"] if "backspace" in choice]
    assert edits.count("delete") == done["deletes"] == usage["deletes"]
    assert edits.count("token") == done["generated"] and edits[-1] == "done"
    assert replay(chunks) == content(chunks) == done["text"]
    assert chunks[-1]["choices"] == []  # include_usage's last chunk


def test_deleted_text_never_reaches_a_chat_streams_deltas(server):
    for _ in range(3):
        standard = server.stream(CHAT, {"messages": QUESTION})
        edited = server.stream(CHAT, {"messages": QUESTION, "edit_stream": True})
        for chunks in standard, edited:
            assert done_record(chunks)["deletes"] > 0 and content(chunks) == done_record(chunks)["text"]
        assert replay(edited) == done_record(edited)["text"]


def test_no_delete_and_sampling_fields_apply_to_one_request(server):
    status, _, body = server.post(CHAT, {"messages": QUESTION, "no_delete": True, "temperature": 0,
                                         "top_k": 5, "top_p": 0.9, "min_p": 0.1, "seed": 3, "max_deletes": 2})
    assert status == 200 and body["usage"]["deletes"] == 0
    status, _, body = server.post(CHAT, {"messages": QUESTION, "max_deletes": 0})
    assert status == 200 and body["choices"][0]["backspace"]["finish_reason"] == "delete_budget"
    assert body["choices"][0]["finish_reason"] == "length"  # ours, mapped onto OpenAI's
    status, _, body = server.post(CHAT, {"messages": QUESTION})
    assert body["usage"]["deletes"] > 0  # the next request has the server's settings again


def test_a_stop_string_ends_the_text_before_it_in_every_form(server):
    model = backspace_cli.load().model
    endless = {model.token_text(model.llama.token_eos()): -100}  # so that the greedy reply has length to cut
    plain = {"prompt": "12+7=", "temperature": 0, "no_delete": True, "max_tokens": 12, "logit_bias": endless}
    full = server.post(COMPLETIONS, plain)[2]["choices"][0]["text"]
    stop = full[len(full) // 2 :]
    cut = full[: full.index(stop)]
    status, _, body = server.post(COMPLETIONS, {**plain, "stop": ["never written", stop]})
    assert status == 200 and body["choices"][0]["text"] == cut and body["choices"][0]["finish_reason"] == "stop"
    chunks = server.stream(COMPLETIONS, {**plain, "stop": stop, "edit_stream": True})
    assert content(chunks) == replay(chunks) == done_record(chunks)["text"] == cut


def test_a_request_that_extends_the_last_one_reuses_its_cache(server):
    first = server.post(CHAT, {"messages": QUESTION})[2]
    answer = first["choices"][0]["message"]["content"]
    follow_up = [*QUESTION, {"role": "assistant", "content": answer}, {"role": "user", "content": "And 3+4?"}]
    second = server.post(CHAT, {"messages": follow_up})[2]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"] - 1
    unrelated = server.post(COMPLETIONS, {"prompt": "9+9="})[2]
    assert unrelated["usage"]["prompt_tokens_details"]["cached_tokens"] <= 1


def assert_openai_error(status, headers, body, expected_status, param=None):
    assert status == expected_status
    assert headers["content-type"] == "application/json"
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    assert isinstance(error["type"], str)
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize("body, param", [
    (b'{"messages": [', None),  # malformed JSON
    (b'[1, 2]', None),  # JSON, but not an object
    ({"messages": QUESTION, "temperature": "hot"}, "temperature"),
    ({"messages": QUESTION, "max_tokens": 2.5}, "max_tokens"),
    ({"messages": QUESTION, "stream": "yes"}, "stream"),
    ({"messages": QUESTION, "temperature": -1}, "temperature"),
    ({"messages": QUESTION, "top_p": 2}, "top_p"),
    ({"messages": QUESTION, "repeat_penalty": 0}, "repeat_penalty"),
    ({"messages": QUESTION, "temperature": "0.5"}, "temperature"),  # text, though it spells a number
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
    ({"messages": QUESTION, "logit_bias": {"1": "high"}}, "logit_bias"),
    ({"messages": "What is 12+7?"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    ({"messages": QUESTION, "max_tokens": 100_000}, "max_tokens"),  # past the context
    ({"messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": QUESTION, "logit_bias": {"no such token": 1}}, "logit_bias"),
    ({"messages": QUESTION, "logit_bias": {"²": 1}}, "logit_bias"),  # a digit to isdigit(), not to int()
    ({"messages": QUESTION, "logit_bias": {"9" * 5000: 1}}, "logit_bias"),  # past int()'s digit limit
    ({"messages": QUESTION, "n": 2}, "n"),
    (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),  # deeper than any parser recurses
    ({"messages": [{"role": "user", "content": "\ud800"}]}, None),  # half a UTF-16 pair: no character
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a\udfffb"}]}]}, None),
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ({"messages": QUESTION, "temperature": 10**400}, "temperature"),  # no float holds it
    ({"messages": QUESTION, "repeat_penalty": 10**400}, "repeat_penalty"),
    ({"messages": QUESTION, "repeat_penalty": 1e308}, "repeat_penalty"),  # a float, but logits overflow
    ({"messages": QUESTION, "repeat_penalty": 1e-308}, "repeat_penalty"),
    ({"messages": QUESTION, "logit_bias": {"1": 10**400}}, "logit_bias"),
    ({"messages": QUESTION, "logit_bias": {"1": 1e308}}, "logit_bias"),
    ({"messages": QUESTION, "top_k": 10**400}, "top_k"),
])
def test_a_bad_chat_request_gets_an_openai_error_with_a_4xx(server, body, param):
    assert_openai_error(*server.post(CHAT, body), 400, param)
    log = server.output()
    assert "Traceback" not in log and "Warning" not in log, log


def test_the_extremes_that_settings_accept_run_without_a_warning(server):
    for extreme in (1e30, 1e-30):
        body = {"messages": QUESTION, "temperature": extreme, "repeat_penalty": extreme, "max_tokens": 4,
                "logit_bias": {"1": 100, "2": -100}}
        status, _, reply = server.post(CHAT, body)
        assert status == 200, reply
    log = server.output()
    assert "Traceback" not in log and "Warning" not in log, log


def test_bytes_that_are_not_http_get_a_json_400(server):
    with socket.create_connection((server.host, server.port), timeout=60) as client:
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "invalid_http"


@pytest.mark.parametrize("prompt", ["\ud800", ["\udc00x"]])
def test_a_prompt_with_a_lone_surrogate_is_refused(server, prompt):
    assert_openai_error(*server.post(COMPLETIONS, {"prompt": prompt}), 400)


def test_a_prompt_longer_than_the_context_is_refused(server):
    status, headers, body = server.post(COMPLETIONS, {"prompt": "1+1=" * 400})
    assert_openai_error(status, headers, body, 400, "prompt")
    assert body["error"]["code"] == "context_length_exceeded"


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    # Only the headers are sent: the answer must come from the declared length, before any of the body.
    connection = server.connection()
    try:
        connection.putrequest("POST", CHAT)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(2 << 20))
        connection.endheaders()
        response = connection.getresponse()
        answer = response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()
    assert_openai_error(*answer, 413)


def test_unknown_paths_and_methods_get_json_errors(server):
    assert_openai_error(*server.request("GET", "/v1/nothing"), 404)
    assert_openai_error(*server.request("GET", CHAT), 405)


def test_the_server_still_answers_after_bad_requests(server):
    server.post(CHAT, b"{")
    status, _, body = server.post(CHAT, {"messages": QUESTION})
    assert status == 200 and body["choices"][0]["message"]["content"] == body["choices"][0]["backspace"]["text"]


def test_an_api_key_guards_every_api_route_but_not_health():
    with running_server(env={"BACKSPACE_API_KEY": "sesame"}) as server:
        for method, path, body in [("GET", "/v1/models", None), ("POST", CHAT, {"messages": QUESTION}),
                                   ("POST", COMPLETIONS, {"prompt": "1+1="})]:
            assert_openai_error(*server.request(method, path, body), 401)
            assert_openai_error(*server.request(method, path, body, {"Authorization": "Bearer open"}), 401)
            assert server.request(method, path, body, {"Authorization": "Bearer sesame"})[0] == 200
        assert server.request("GET", "/health")[0] == 200


def test_the_page_is_served_with_its_script_and_no_cdn(server):
    connection = server.connection()
    connection.request("GET", "/")
    response = connection.getresponse()
    page = response.read().decode()
    assert response.status == 200 and response.getheader("content-type").startswith("text/html")
    assert response.getheader("content-security-policy") == "default-src 'self'"
    assert '<script src="/page/app.js"' in page and "http" not in page
    connection.request("GET", "/page/app.js")
    script = connection.getresponse()
    assert script.status == 200 and "edit_stream" in script.read().decode()
    connection.close()


def test_a_missing_model_or_a_taken_port_is_one_line_and_a_nonzero_exit(server):
    serve = [sys.executable, "-m", "backspace_cli", "serve"]
    for arguments in (["-m", "/no/such/model.gguf"], ["--port", str(server.port)]):
        result = subprocess.run([*serve, *arguments], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("field, option, value", [
    ("temperature", "--temp", -1), ("top_p", "--top-p", 1.5), ("min_p", "--min-p", -0.1),
    ("repeat_penalty", "--repeat-penalty", 0), ("max_tokens", "--max-tokens", 0), ("max_deletes", "--max-deletes", -1),
    ("temperature", "--temp", 10**400), ("repeat_penalty", "--repeat-penalty", 1e308), ("top_k", "--top-k", 2**31),
])
def test_a_value_the_command_line_refuses_the_server_refuses_too(server, field, option, value):
    assert CliRunner().invoke(main, ["complete", option, str(value), "hi"]).exit_code == 2
    assert_openai_error(*server.post(CHAT, {"messages": QUESTION, field: value}), 400, field)
