"""A bounded load test on 127.0.0.1: 32 clients at once, streamed and whole, chat and completions, with replies
one at a time and stepped together (--parallel). Every request is answered with the reply it gets alone, every
stream replays to its final text, and memory stays flat.
The figures it prints are for docs/serve.md; none is asserted."""
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from serve_client import content, done_record, replay, running_server  # noqa: E402

CLIENTS = 32
ROUNDS = 3  # the first warms up; memory is compared between the ends of the first and the last
SUMS = [(a, b) for a in (3, 12, 48, 250) for b in (7, 91)]
# A slack for allocator noise; a leak of one reply's state per request would exceed it within a round.
RSS_SLACK_KIB = 16 * 1024


def requests_of(client: int) -> list[tuple[str, dict, bool]]:
    """Each client's own mix: chat and completions, whole and streamed, each a different sum."""
    mix = []
    for turn in range(4):
        a, b = SUMS[(client + turn) % len(SUMS)]
        chat = turn % 2 == 0
        body = {"messages": [{"role": "user", "content": f"What is {a}+{b}?"}]} if chat else {"prompt": f"{a}+{b}="}
        mix.append(("/v1/chat/completions" if chat else "/v1/completions", {**body, "temperature": 0}, turn >= 2))
    return mix


def answer(server, path: str, body: dict, stream: bool) -> str:
    """The final text, checked on the way: one id per stream, and its replay and deltas agree."""
    if not stream:
        status, _, reply = server.post(path, body)
        assert status == 200, reply
        choice = reply["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        assert text == choice["backspace"]["text"]
        return text
    chunks = server.stream(path, {**body, "edit_stream": True})
    assert len({chunk["id"] for chunk in chunks}) == 1
    text = done_record(chunks)["text"]
    assert replay(chunks) == content(chunks) == text
    return text


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


# One llama.cpp thread: its threads wait for each other spinning, and on a shared machine a second one mostly
# waits for a core.
SERVER = ("-t", "1", "--logit-bias", "<|delete|>=3")


@pytest.fixture(scope="module")
def expected() -> dict[tuple[str, str], str]:
    """Greedy replies depend on the prompt alone: taken one by one, they are what each request must get."""
    with running_server(*SERVER) as server:
        return {(path, str(body)): answer(server, path, body, False)
                for client in range(len(SUMS)) for path, body, _ in requests_of(client)}


@pytest.mark.parametrize("parallel", ["1", "4"])
def test_32_clients_at_once_each_get_their_own_complete_reply(expected, parallel):
    with running_server(*SERVER, "--parallel", parallel) as server:
        def client(index: int) -> list[float]:
            latencies = []
            for path, body, stream in requests_of(index):
                started = time.perf_counter()
                assert answer(server, path, body, stream) == expected[(path, str(body))]
                latencies.append(time.perf_counter() - started)
            return latencies

        memory, latencies = [], []
        with ThreadPoolExecutor(CLIENTS) as pool:
            for round_ in range(ROUNDS):
                started = time.perf_counter()
                results = list(pool.map(client, range(CLIENTS), timeout=300))
                elapsed = time.perf_counter() - started
                memory.append(rss_kib(server.process.pid))
                if round_:
                    latencies += [latency for result in results for latency in result]
                assert sum(map(len, results)) == CLIENTS * 4
        assert memory[-1] - memory[0] < RSS_SLACK_KIB, f"RSS grew from {memory[0]} to {memory[-1]} KiB"
        assert server.request("GET", "/health")[2] == {"status": "ok", "model": "backspace-tiny", "busy": False,
                                                        "waiting": 0}
        cuts = statistics.quantiles(latencies, n=100)
        print(f"\nload, --parallel {parallel}: {CLIENTS} clients, {CLIENTS * 4} requests a round; "
              f"last round {CLIENTS * 4 / elapsed:.1f} req/s; "
              f"latency p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms; RSS {memory} KiB")
