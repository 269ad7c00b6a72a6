"""For the server tests: `backspace serve` on a free loopback port, stopped by whoever started it, and a small HTTP client."""
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

STARTUP_S = 60  # loading a model on a busy machine
# Our finish reasons, as OpenAI's finish_reason gives them (a sampled reply may end in any of them).
OPENAI_FINISH = {"stop": "stop", "length": "length", "context": "length", "delete_budget": "length",
                 "interrupted": "stop"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    host: str
    port: int
    process: subprocess.Popen
    log: object  # the server's stdout and stderr

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None):
        """(status, headers, parsed JSON body); `body` is sent as JSON unless it is bytes."""
        connection = self.connection()
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read())
        finally:
            connection.close()

    def post(self, path: str, body, headers=None):
        return self.request("POST", path, body, headers)

    def stream(self, path: str, body: dict, headers=None) -> list[dict]:
        """The chunks of a streamed reply, checked to end with [DONE]."""
        connection = self.connection()
        try:
            connection.request("POST", path, body=json.dumps({**body, "stream": True}).encode(),
                               headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            assert response.getheader("content-type").startswith("text/event-stream")
            return sse_chunks(response)
        finally:
            connection.close()


def sse_chunks(response) -> list[dict]:
    chunks = []
    for line in response:
        line = line.decode().rstrip("\n")
        if not line:
            continue
        assert line.startswith("data: "), line
        if line == "data: [DONE]":
            return chunks
        chunks.append(json.loads(line[len("data: "):]))
    raise AssertionError("the stream ended without [DONE]")


@contextlib.contextmanager
def running_server(*args: str, env: dict | None = None):
    """`backspace serve ARGS` on 127.0.0.1; it is stopped (killed if it will not stop) however the test ends."""
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "backspace_cli", "serve", "--port", str(port), *args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    server = Server("127.0.0.1", port, process, log)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited with {server.process.returncode}:\n{server.output()}")
        try:
            status, _, body = server.request("GET", "/health")
            if status == 200 and body["status"] == "ok":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer /health within {STARTUP_S} s:\n{server.output()}")


def replay(chunks: list[dict]) -> str:
    """Apply the edit stream's token and delete events, as a client would; a delete takes back exactly
    the text of the last token still in the text."""
    pieces = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            edit = choice.get("backspace", {})
            if edit.get("type") == "token":
                pieces.append(edit["text"])
            elif edit.get("type") == "delete":
                assert pieces.pop() == edit["text"]
    return "".join(pieces)


def content(chunks: list[dict]) -> str:
    """What an unmodified OpenAI client sees: the deltas' text appended."""
    parts = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            parts.append((choice["delta"].get("content") or "") if "delta" in choice else choice["text"])
    return "".join(parts)


def done_record(chunks: list[dict]) -> dict:
    (record,) = [choice["backspace"] for chunk in chunks for choice in chunk["choices"]
                 if choice.get("backspace", {}).get("type") == "done"]
    return record
