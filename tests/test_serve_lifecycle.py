"""The server's one engine under long replies (SmolLM2, its end tokens banned): the bounded queue, a client
that leaves, and SIGINT/SIGTERM."""
import json
import signal
import threading
import time

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from serve_client import running_server, sse_chunks  # noqa: E402

pytestmark = pytest.mark.smollm2

CHAT = "/v1/chat/completions"
# Far longer than any test waits: only an early end can finish it in time.
ENDLESS = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 3000,
           "logit_bias": {"<|im_end|>": -100, "<|endoftext|>": -100}, "stream": True, "edit_stream": True}
SHORT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
WITHIN_S = 10  # "at once", on a busy machine


class OpenStream:
    """A streamed request that has begun: its first chunk is read, the rest waits."""

    def __init__(self, server, body: dict = ENDLESS) -> None:
        self.connection = server.connection()
        self.connection.request("POST", CHAT, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.readline().startswith(b"data: ")

    @classmethod
    def queued(cls, server, body: dict = ENDLESS) -> "OpenStream":
        """A streamed request sent, which waits in the queue: nothing of it is read."""
        stream = cls.__new__(cls)
        stream.connection = server.connection()
        stream.connection.request("POST", CHAT, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        stream.response = None
        return stream

    def rest(self) -> list[dict]:
        return sse_chunks(self.response)

    def leave(self) -> None:
        if self.response is not None:
            self.response.close()
        self.connection.close()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
        time.sleep(0.05)


def health(server) -> dict:
    return server.request("GET", "/health")[2]


def idle(server) -> bool:
    now = health(server)
    return not now["busy"] and now["waiting"] == 0


@pytest.fixture
def smollm2_server(smollm2_path):
    with running_server("-m", str(smollm2_path), "--queue-size", "1") as server:
        yield server


def test_a_client_that_leaves_stops_its_generation_at_once(smollm2_server):
    stream = OpenStream(smollm2_server)
    assert health(smollm2_server)["busy"]
    stream.leave()
    wait_for(lambda: idle(smollm2_server), "the engine is free again")
    status, _, body = smollm2_server.post(CHAT, SHORT)
    assert status == 200 and body["usage"]["completion_tokens"] <= 3


def test_a_queued_client_that_leaves_never_holds_the_engine(smollm2_server):
    running = OpenStream(smollm2_server)
    waiting = OpenStream.queued(smollm2_server)
    wait_for(lambda: health(smollm2_server)["waiting"] == 1, "the second request waits")
    waiting.leave()
    running.leave()
    wait_for(lambda: idle(smollm2_server), "the engine is free, the left request dropped")


def test_past_the_queue_a_request_gets_503_with_retry_after_and_the_queued_one_is_answered(smollm2_server):
    stream = OpenStream(smollm2_server)
    queued = {}
    waiter = threading.Thread(target=lambda: queued.update(answer=smollm2_server.post(CHAT, SHORT)))
    waiter.start()
    try:
        wait_for(lambda: health(smollm2_server)["waiting"] == 1, "the second request waits")
        status, headers, body = smollm2_server.post(CHAT, SHORT)
        assert status == 503 and headers["retry-after"].isdigit()
        assert body["error"]["code"] == "queue_full" and "busy" in body["error"]["message"]
    finally:
        stream.leave()
        waiter.join(timeout=60)
    status, _, body = queued["answer"]
    assert status == 200 and body["choices"][0]["message"]["content"] == body["choices"][0]["backspace"]["text"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_open_stream_cleanly_and_the_server_exits_0(smollm2_path, sig):
    with running_server("-m", str(smollm2_path)) as server:
        stream = OpenStream(server)
        server.process.send_signal(sig)
        started = time.monotonic()
        chunks = stream.rest()  # ends with [DONE]
        done = chunks[-1]["choices"][0]
        assert done["finish_reason"] == "stop" and done["backspace"]["finish_reason"] == "interrupted"
        assert server.process.wait(timeout=WITHIN_S) == 0
        assert time.monotonic() - started < WITHIN_S
        output = server.output()
        assert "backspace serve: stopped" in output and "Traceback" not in output
