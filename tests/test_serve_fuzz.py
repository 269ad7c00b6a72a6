"""A seeded fuzz of `backspace serve`'s HTTP API: random and mutated bodies, headers and framings, and clients
that leave at random points. Every answer is a JSON error with a 4xx, a reply, or a closed connection; the
server's log holds no traceback; and after each case a normal request is answered right (the health check
after each, a chat after every CHAT_EVERY).

BACKSPACE_SERVE_FUZZ_CASES (default 200) and BACKSPACE_SERVE_FUZZ_SEED (default 0) set the run: a longer
run is this test with more cases; a failure names its case's seed."""
import json
import os
import random
import socket

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from serve_client import running_server  # noqa: E402

CASES = int(os.environ.get("BACKSPACE_SERVE_FUZZ_CASES", "200"))
SEED = int(os.environ.get("BACKSPACE_SERVE_FUZZ_SEED", "0"))
ANSWER_S = 60  # for a whole answer, on a busy machine: only a hung server takes this long
CHAT_EVERY = 20  # cases between the chat requests that check the model still answers right

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
QUESTION = {"messages": [{"role": "user", "content": "What is 12+7?"}], "max_tokens": 2}
PROMPT = {"prompt": "12+7=", "max_tokens": 2}
FIELDS = ["messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
          "repeat_penalty", "seed", "max_deletes", "stream", "edit_stream", "stream_options", "stop", "logit_bias",
          "n", "logprobs", "echo", "no_delete", "model", "role", "content", "type", "text", "include_usage"]
PATHS = [CHAT, COMPLETIONS, "/health", "/v1/models", "/", "/page/app.js", "/v1/../../etc/passwd", "/%00",
         "/page/%2e%2e/app.py", "/v1/" + "a" * 3000, "*"]
DEEP = "\x00deep\x00"  # a string that a body's text replaces with JSON nested deeper than a parser recurses
STRINGS = ["", "user", "assistant", "text", "\ud800", "a\udfffb", "<|im_end|>", "<|delete|>", "\x00", "é" * 50,
           "x" * 5000, "1", DEEP]
NUMBERS = [0, 1, -1, 2, 2**31, 2**63, 10**400, -(10**400), 0.5, -0.0, 1e308, -1e308, 1e-308, 5e-324]


def value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 3)
    if kind == 0:
        return rng.choice(NUMBERS)
    if kind == 1:
        return rng.choice([True, False, None])
    if kind == 2:
        return rng.choice(STRINGS)
    if kind == 3:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 4:
        return {rng.choice(FIELDS + STRINGS[:8]): value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [{"role": rng.choice(["user", "system", "developer", "wizard"]), "content": value(rng, depth + 1)}]


def mutated_body(rng: random.Random, chat: bool) -> bytes:
    body = json.loads(json.dumps(QUESTION if chat else PROMPT))
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(4)
        if not isinstance(body, dict):  # the whole body was replaced: nothing left to edit
            break
        if action == 0:
            body[rng.choice(FIELDS)] = value(rng)
        elif action == 1 and body:
            del body[rng.choice(list(body))]
        elif action == 2 and isinstance(body.get("messages"), list) and body["messages"]:
            message = body["messages"][0]
            if isinstance(message, dict):
                message[rng.choice(["role", "content", "name"])] = value(rng)
        else:
            body = value(rng)
    depth = rng.choice([10, 1000, 100_000])
    text = json.dumps(body, ensure_ascii=rng.random() < 0.5).replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate as raw bytes, not only as an escape
    if rng.random() < 0.3:
        data = mutated_bytes(rng, data)
    return data


def mutated_bytes(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        action = rng.randrange(4)
        if action == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif action == 1:
            del data[at:]
        elif action == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        else:
            data[at:at] = rng.choice([b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b'"', b"[", b"{", b"\\u", b"1e999"])
    return bytes(data)


def request_bytes(rng: random.Random, server) -> tuple[bytes, bool, str]:
    """A request as its bytes, whether it is whole (if not, the server learns that no more is coming), and
    its method."""
    path = rng.choice([CHAT, COMPLETIONS]) if rng.random() < 0.7 else rng.choice(PATHS)
    method = "POST" if rng.random() < 0.8 else rng.choice(["GET", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"])
    body = mutated_body(rng, path != COMPLETIONS)
    headers = {"Host": f"127.0.0.1:{server.port}", "Connection": "close"}
    if rng.random() < 0.8:
        headers["Content-Type"] = rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                              "application/json; charset=latin-1", "multipart/form-data"])
    if rng.random() < 0.15:
        headers["Host"] = rng.choice(["attacker.example", f"localhost:{server.port}", "[::1", "", "a" * 300])
    if rng.random() < 0.15:
        headers["Origin"] = rng.choice(["null", "http://attacker.example", f"http://127.0.0.1:{server.port}", "x"])
    if rng.random() < 0.1:
        headers["Authorization"] = rng.choice(["Bearer", "Bearer \xe9", "Basic abc", "Bearer " + "k" * 2000])
    if rng.random() < 0.1:
        headers["X-" + "y" * rng.randint(1, 50)] = "".join(chr(rng.randrange(32, 256)) for _ in range(20))
    framing = rng.choice(["length"] * 5 + ["short", "long", "chunked", "bad-chunked", "none", "junk"])
    whole = framing in ("length", "short", "chunked", "none")
    if framing in ("length", "long"):
        headers["Content-Length"] = str(len(body) + (rng.randint(1, 1000) if framing == "long" else 0))
    elif framing == "short":
        headers["Content-Length"] = str(rng.randrange(len(body) + 1))
    elif framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    elif framing == "bad-chunked":
        headers["Transfer-Encoding"] = "chunked"
        body = rng.choice([b"zz\r\n", b"5\r\nab", b"-1\r\n", b"ffffffffffffffffff\r\n"]) + body
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{name}: {text}\r\n" for name, text in headers.items())
    data = head.encode("latin-1") + b"\r\n" + body
    if framing == "junk":
        data = mutated_bytes(rng, data)
    return data, whole, method


def answer(client: socket.socket) -> bytes:
    """What the server sends until it closes; a server that closes with some of the request unread resets
    the connection, which is a close too."""
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def check_answer(raw: bytes, method: str) -> None:
    """A reply, or a JSON error with a 4xx (whose body a HEAD answer leaves out); nothing is a clean close."""
    if not raw:
        return
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {name.lower(): text.strip() for name, _, text in (line.partition(":") for line in header_lines)}
    assert status < 500, raw[:2000]
    if status >= 400:
        assert headers.get("content-type") == "application/json", raw[:2000]
        if method == "HEAD":
            return
        error = json.loads(body)["error"]
        assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]


def run_case(rng: random.Random, server) -> None:
    data, whole, method = request_bytes(rng, server)
    client = socket.create_connection((server.host, server.port), timeout=ANSWER_S)
    try:
        try:
            if rng.random() < 0.15:  # a client that leaves after a random part of its request
                client.sendall(data[: rng.randrange(len(data) + 1)])
                return
            client.sendall(data)
            if not whole:
                client.shutdown(socket.SHUT_WR)
            if rng.random() < 0.1:  # one that leaves once its answer has begun
                client.recv(rng.randint(1, 200))
                return
        except OSError:  # the server refused what it had read and closed, before the rest was sent
            pass
        check_answer(answer(client), method)
    finally:
        client.close()


def assert_answered_right(server, chat: bool) -> None:
    """A normal request's answer: the health check's, and now and then a chat's (which costs the model's time)."""
    status, _, body = server.request("GET", "/health")
    assert status == 200 and body["status"] == "ok", body
    if chat:
        status, _, body = server.post(CHAT, QUESTION)
        assert status == 200, body
        (choice,) = body["choices"]
        assert choice["message"]["content"] == choice["backspace"]["text"]


def test_no_request_a_stranger_can_send_breaks_the_server():
    rng = random.Random(SEED)
    with running_server("-n", "2", "--upload-timeout", "5") as server:
        for number in range(CASES):
            case_seed = rng.randrange(2**32)
            try:
                run_case(random.Random(case_seed), server)
                assert_answered_right(server, chat=number % CHAT_EVERY == CHAT_EVERY - 1 or number == CASES - 1)
                assert "Traceback" not in server.output()
            except Exception as error:
                raise AssertionError(f"case {number} (seed {case_seed}): {error!r}\n{server.output()[-3000:]}") from None
        log = server.output()
        assert "Traceback" not in log and "Exception" not in log and "Warning" not in log, log
