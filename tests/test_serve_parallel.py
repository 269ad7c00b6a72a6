"""`backspace serve --parallel N` over HTTP: replies stepped together are each the reply its request gets alone,
a client that leaves frees its sequence at once, the queue past the running replies still ends in 503, and a
signal ends every open reply and exits 0."""
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from serve_client import content, done_record, replay, running_server  # noqa: E402
from test_serve_lifecycle import CHAT, SHORT, WITHIN_S, OpenStream, health, idle, wait_for  # noqa: E402

# Greedy, with the delete token favoured so that replies delete; some end at a stop string.
REQUESTS = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": f"What is {a}+{b}?"}], "temperature": 0,
                              **({"stop": ["1"]} if a % 2 else {})}, a % 3 == 0)
    for a, b in [(3, 7), (12, 91), (48, 7), (250, 91), (5, 5), (9, 14)]
] + [
    ("/v1/completions", {"prompt": f"{a}+{b}=", "temperature": 0, "max_tokens": 40}, a % 2 == 0)
    for a, b in [(1, 2), (30, 4), (77, 8), (6, 600)]
]
SERVER = ("-t", "1", "--logit-bias", "<|delete|>=3")


def answer(server, path: str, body: dict, stream: bool) -> tuple[str, str, int]:
    """(the final text, its finish reason, its deletes); a stream's edits replay to its text."""
    if not stream:
        status, _, reply = server.post(path, body)
        assert status == 200, reply
        record = reply["choices"][0]["backspace"]
        choice = reply["choices"][0]
        assert (choice["message"]["content"] if "message" in choice else choice["text"]) == record["text"]
        return record["text"], record["finish_reason"], record["deletes"]
    chunks = server.stream(path, {**body, "edit_stream": True})
    record = done_record(chunks)
    assert replay(chunks) == content(chunks) == record["text"]
    return record["text"], record["finish_reason"], record["deletes"]


@pytest.fixture(scope="module")
def alone():
    """Each request's reply from a server that runs one reply at a time."""
    with running_server(*SERVER) as server:
        return [answer(server, path, body, False) for path, body, _ in REQUESTS]


def test_concurrent_clients_each_get_the_reply_their_request_gets_alone(alone):
    assert any(deletes for _, _, deletes in alone)
    with running_server(*SERVER, "--parallel", "4") as server:
        with ThreadPoolExecutor(len(REQUESTS)) as pool:
            together = list(pool.map(lambda request: answer(server, *request), REQUESTS * 2, timeout=300))
        assert together == alone * 2
        wait_for(lambda: idle(server), "every sequence is free again")


@pytest.fixture
def parallel_smollm2(smollm2_path):
    with running_server("-m", str(smollm2_path), "--parallel", "2", "--queue-size", "1") as server:
        yield server


@pytest.mark.smollm2
def test_replies_stepped_together_each_keep_their_own_settings(parallel_smollm2):
    bodies = [{**SHORT, "max_tokens": tokens, "logit_bias": {"<|im_end|>": -100, "<|endoftext|>": -100},
               "temperature": temperature, "seed": 7}
              for tokens, temperature in [(2, 0), (9, 1.5), (5, 0)]]  # two running, one waiting
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda body: server_post(parallel_smollm2, body), bodies, timeout=120))
    assert [reply["usage"]["completion_tokens"] for reply in replies] == [2, 9, 5]
    assert [reply["choices"][0]["finish_reason"] for reply in replies] == ["length"] * 3


def server_post(server, body: dict) -> dict:
    status, _, reply = server.post(CHAT, body)
    assert status == 200, reply
    return reply


@pytest.mark.smollm2
def test_a_client_that_leaves_frees_its_sequence_for_the_next_request_while_the_other_runs(parallel_smollm2):
    server = parallel_smollm2
    staying, leaving = OpenStream(server), OpenStream(server)
    try:
        leaving.leave()
        # Were its sequence kept, this request would wait for the endless reply that stays.
        status, _, body = server.post(CHAT, SHORT)
        assert status == 200 and body["usage"]["completion_tokens"] <= 3
        assert health(server)["busy"]  # the reply that stays goes on
    finally:
        staying.leave()
    wait_for(lambda: idle(server), "every sequence is free again")


@pytest.mark.smollm2
def test_past_the_running_replies_and_the_queue_a_request_gets_503_and_the_queued_one_is_answered(parallel_smollm2):
    server = parallel_smollm2
    streams = [OpenStream(server), OpenStream(server)]
    queued = {}
    waiter = threading.Thread(target=lambda: queued.update(answer=server.post(CHAT, SHORT)))
    waiter.start()
    try:
        wait_for(lambda: health(server)["waiting"] == 1, "a third request waits for a sequence")
        status, headers, body = server.post(CHAT, SHORT)
        assert status == 503 and headers["retry-after"].isdigit() and body["error"]["code"] == "queue_full"
    finally:
        for stream in streams:
            stream.leave()
        waiter.join(timeout=60)
    status, _, body = queued["answer"]
    assert status == 200 and body["choices"][0]["message"]["content"] == body["choices"][0]["backspace"]["text"]


@pytest.mark.smollm2
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_every_open_stream_cleanly_and_the_server_exits_0(smollm2_path, sig):
    with running_server("-m", str(smollm2_path), "--parallel", "3") as server:
        streams = [OpenStream(server) for _ in range(3)]
        server.process.send_signal(sig)
        for stream in streams:
            done = stream.rest()[-1]["choices"][0]
            assert done["finish_reason"] == "stop" and done["backspace"]["finish_reason"] == "interrupted"
        assert server.process.wait(timeout=WITHIN_S) == 0
        output = server.output()
        assert "backspace serve: stopped" in output and "Traceback" not in output


def test_a_recurrent_model_serves_its_replies_one_at_a_time_and_says_so(tiny_mamba_path):
    with running_server("-m", str(tiny_mamba_path), "--parallel", "4") as server:
        body = {"prompt": "the sky", "temperature": 0, "max_tokens": 8}
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda _: server.post("/v1/completions", body), range(3), timeout=120))
        assert all(status == 200 for status, _, _ in replies)
        assert len({reply["choices"][0]["text"] for _, _, reply in replies}) == 1
        assert "one at a time" in server.output()
